"""`ragtune tune` on two CPU processes under torchrun (DDP over gloo), compared with one process,
on a tiny random Llama and the embedded embedding model (`slow` tier: each run starts fresh
Python processes that import torch); and the launcher environment read (fast)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import build_tiny_llama

from builder.build import build
from builder.project import open_project
from finetune.checkpoints import MARKER
from finetune.distributed import LaunchError, launched

ROOT = Path(__file__).resolve().parents[1]
DOCS = {
    "manuals/centrifuge.md": "# Centrifuge\n\n## Rotor\n\nThe rotor must be replaced after 12000 "
    "hours of use.\n\n## Errors\n\nError 217 means the lid lock failed.\n",
    "handbook/vacation.md": "# Vacation\n\nEmployees earn 2 vacation days per month.\n\n"
    "Parking costs 40 euros per month.\n",
    "handbook/laptops.md": "# Laptops\n\nA laptop password must have at least 14 characters.\n\n"
    "Laptops are replaced every 4 years.\n",
    "billing/refunds.md": "# Refunds\n\nA refund is paid within 10 days of the invoice.\n\n"
    "Warranty: 2 years for every centrifuge.\n",
}
TINY_RUN = [
    "synthesis.teacher='none'",
    "synthesis.roundtrip_k=3",
    "tune.max_steps=2",
    "tune.save_every_steps=1",
    "tune.batch_size=2",
    "tune.max_seq_tokens=2048",
    "generation.max_new_tokens=4",
]


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stderr[-6000:]}"
    return result


def tune_alone(project: Path, *extra: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "builder.cli", "tune", str(project), *extra], project.parent)


def tune_on_two(project: Path, *extra: str) -> subprocess.CompletedProcess:
    # --standalone: a free port of its own, so parallel test runs do not meet on 29500.
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    launch += ["--nproc-per-node", "2"]
    return run([*launch, "-m", "builder.cli", "tune", str(project), *extra], project.parent)


def layout(project: Path) -> set[str]:
    """Every file the tune wrote, without the per-process RNG states of the checkpoints."""
    written = set()
    for folder in ("tune", "adapters"):
        for path in (project / folder).rglob("*"):
            if path.is_file() and not path.name.startswith("rng_state"):
                written.add(path.relative_to(project).as_posix())
    return written


def card_of(project: Path) -> dict:
    current = (project / "adapters" / "CURRENT").read_text().strip()
    return json.loads((project / "adapters" / current / "run_card.json").read_text())


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """The same built project tuned by one process and, in a copy, by two."""
    work = tmp_path_factory.mktemp("ddp")
    model = build_tiny_llama(work / "tiny-llama")
    docs = work / "docs"
    for name, text in DOCS.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text, encoding="utf-8")
    settings = [
        f"generation.model={str(model)!r}",
        "ingest.chunk_tokens=40",
        "ingest.chunk_overlap=5",
        *TINY_RUN,
    ]
    project = open_project(work / "alone", settings, docs=docs)
    project.save_config()
    build(project)
    shutil.copytree(work / "alone", work / "two")
    alone = tune_alone(work / "alone")
    two = tune_on_two(work / "two")
    return work / "alone", alone, work / "two", two


@pytest.mark.slow
def test_two_processes_train_together_and_the_main_one_reports_once(tuned):
    _, _, two, result = tuned
    output = result.stdout + result.stderr
    assert output.count("world size 2 (MULTI_CPU (gloo))") == 1
    assert output.count("trained 2 optimizer steps") == 1
    assert output.count("loading the model on 2 processes") == 1
    assert "Traceback" not in output
    card = card_of(two)
    assert card["processes"] == 2 and card["distributed"] == "MULTI_CPU (gloo)"
    assert [step for step, _ in card["loss_curve"]] == [1, 2]  # each step logged once
    status = json.loads((two / "tune" / "status.json").read_text())
    assert status["stage"] == "done"


@pytest.mark.slow
def test_one_adapter_in_the_same_layout_as_one_process(tuned):
    alone, alone_result, two, _ = tuned
    assert "world size 1 (NO)" in alone_result.stderr
    assert card_of(alone)["processes"] == 1
    assert layout(two) == layout(alone)
    runs = [p for p in (two / "adapters").iterdir() if p.is_dir()]
    assert len(runs) == 1
    adapter = runs[0] / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    assert not list(runs[0].glob(".adapter-*"))  # no half-written or replaced copy left
    # Both processes wrote their RNG state into each checkpoint before it was marked complete.
    for step in (1, 2):
        checkpoint = runs[0] / "checkpoints" / f"checkpoint-{step}"
        assert (checkpoint / MARKER).is_file()
        assert {p.name for p in checkpoint.glob("rng_state*")} == {
            "rng_state_0.pth",
            "rng_state_1.pth",
        }


@pytest.mark.slow
def test_a_stopped_two_process_run_resumes(tuned):
    _, _, two, _ = tuned
    run_dir = next(p for p in (two / "adapters").iterdir() if p.is_dir())
    # As if the run had stopped after its first checkpoint: later state gone.
    shutil.rmtree(run_dir / "checkpoints" / "checkpoint-2")
    shutil.rmtree(run_dir / "adapter")
    (run_dir / "run_card.json").unlink()
    result = tune_on_two(two, "--resume")
    assert "world size 2" in result.stderr
    card = card_of(two)
    assert card["resumed_from"] == 1 and card["steps"] == 2 and card["processes"] == 2
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()


def test_alone_a_process_is_rank_0_of_1(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    world = launched()
    assert (world.rank, world.size, world.is_main, world.distributed) == (0, 1, True, False)


def test_a_launchers_environment_gives_the_rank(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    world = launched()
    assert (world.rank, world.size, world.is_main, world.distributed) == (1, 2, False, True)


@pytest.mark.parametrize(("rank", "size", "message"), [("x", "2", "RANK"), ("2", "2", "outside")])
def test_an_inconsistent_environment_names_the_variable(monkeypatch, rank, size, message):
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", size)
    with pytest.raises(LaunchError, match=message):
        launched()
