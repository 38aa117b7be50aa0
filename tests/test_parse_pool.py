"""Parse workers (issue 12, item 3): a file whose parse hangs, needs too much memory or crashes
is skipped with a reason naming the setting, the files after it still parse, and no worker
outlives the pool or the build, Ctrl-C included."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path

import pytest
from stub_loaders import load_or_misbehave
from test_hostile_files import GOOD, MB, within

import builder.build
from builder.build import build
from retrieval.config import IngestConfig
from retrieval.parse_pool import ParsePool, ParseWorkerError

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc: Linux")


def wait_for(path: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} did not appear"
        time.sleep(0.02)


@linux_only
def test_each_misbehaving_file_costs_only_itself(tmp_path: Path) -> None:
    names = ["a.md", "hang.md", "b.md", "greedy.md", "crash.md", "c.md"]
    for name in names:
        (tmp_path / name).write_text(GOOD)
    ingest = IngestConfig(parse_workers=2, parse_timeout_s=2.0)
    with ParsePool(ingest, tmp_path, load_or_misbehave) as pool:
        results = within(30, lambda: list(pool.parse([(tmp_path / n, n) for n in names])))
    parsed = [r.document.source if r.document else None for r in results]
    errors = [r.error for r in results]
    assert parsed == ["a.md", None, "b.md", None, None, "c.md"], errors  # in order, each once
    assert results[1].error.startswith("took longer than ingest.parse_timeout_s = 2 s")
    assert results[3].error.startswith("needed more than ingest.parse_memory_mb = 2048 MB")
    assert results[4].error.startswith("the parser crashed (signal SIGSEGV)")
    assert "rotor lasts" in results[5].document.text
    assert not multiprocessing.active_children()


@linux_only
def test_a_real_parse_past_the_memory_limit_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("word " * (2 * MB))  # 10 MB of text
    with ParsePool(IngestConfig(parse_memory_mb=4), tmp_path) as pool:
        (result,) = within(30, lambda: list(pool.parse([(tmp_path / "big.txt", "big.txt")])))
    assert result.error.startswith("needed more than ingest.parse_memory_mb = 4 MB")


def test_close_from_another_thread_ends_a_hanging_parse(tmp_path: Path) -> None:
    (tmp_path / "hang.md").write_text(GOOD)
    pool = ParsePool(IngestConfig(parse_timeout_s=600), tmp_path, load_or_misbehave)
    results: list = []
    files = [(tmp_path / "hang.md", "hang.md")]
    thread = threading.Thread(target=lambda: results.extend(pool.parse(files)), daemon=True)
    thread.start()
    wait_for(tmp_path / ".hang.md.started")
    pool.close()
    thread.join(10)
    assert not thread.is_alive() and results == []
    assert not multiprocessing.active_children()


def test_workers_that_cannot_start_fail_the_build_with_the_reason(
    project_factory, encoder, monkeypatch
) -> None:
    """Not a skip of every file: a worker that cannot even start (here: its loader cannot be
    imported there) stops the build, with what to check."""
    module = types.ModuleType("only_in_this_process")
    exec("def load(*args):\n    raise AssertionError('never runs')", module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(builder.build, "load_document", module.load)
    project = project_factory({"good.md": GOOD})
    with pytest.raises(ParseWorkerError, match=r"did not start \(exit code 1.*__main__"):
        within(60, lambda: build(project, encoder=encoder))
    assert not multiprocessing.active_children()


BUILD_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import builder.build
    from builder.project import open_project
    from conftest import KeywordEncoder
    from stub_loaders import load_or_misbehave

    if __name__ == "__main__":
        builder.build.load_document = load_or_misbehave
        project = open_project(Path(sys.argv[1]), docs=Path(sys.argv[2]))
        builder.build.build(project, encoder=KeywordEncoder())
    """
)


@linux_only
def test_ctrl_c_stops_the_build_and_leaves_no_process_behind(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a.md", "hang.md", "hang2.md"):
        (docs / name).write_text(GOOD)
    script = tmp_path / "build.py"
    script.write_text(BUILD_SCRIPT)
    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    # A session of its own: Ctrl-C in a terminal signals the whole foreground process group.
    child = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "project"), str(docs)],
        env=env,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_for(docs / ".hang.md.started")
        wait_for(docs / ".hang2.md.started")
        os.killpg(child.pid, signal.SIGINT)
        _, stderr = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert child.returncode != 0 and b"KeyboardInterrupt" in stderr
    deadline = time.monotonic() + 10  # the fork server and workers end once the build has
    while left := running_in_group(child.pid):
        assert time.monotonic() < deadline, f"still running after the build stopped: {left}"
        time.sleep(0.05)


def running_in_group(group: int) -> list[str]:
    """The command names of the live processes of a process group (zombies, already ended but
    not yet reaped by init, excluded)."""
    names = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, fields = stat.read_text().rsplit(")", 1)
        except OSError:  # ended while listed
            continue
        state, _, pgrp = fields.split()[:3]
        if int(pgrp) == group and state != "Z":
            names.append(name.split("(", 1)[1])
    return names
