"""Streamlit entry for the browser test: the real app (apps/chat.py), with the fake keyword
encoder and the echo generator in place of the models (under either generation backend) and
the stand-in of test_jobs.py in place of `ragtune tune`, since it runs in its own process where
pytest's monkeypatch cannot reach."""

import runpy
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from conftest import KeywordEncoder  # noqa: E402
from echo_generator import EchoGenerator  # noqa: E402
from test_jobs import STAND_IN  # noqa: E402

import builder.build  # noqa: E402
import builder.engine  # noqa: E402
import builder.jobs  # noqa: E402
import retrieval.embeddings  # noqa: E402
import retrieval.generation  # noqa: E402

builder.build.load_encoder = lambda *args, **kwargs: KeywordEncoder()
retrieval.embeddings.load_encoder = lambda *args, **kwargs: KeywordEncoder()
retrieval.generation.load_generator_with_adapter = lambda config, adapter: (EchoGenerator(), "echo")
builder.engine.open_llamacpp_generator = lambda config, adapter: EchoGenerator()


def stand_in_tune(project, extra_args=()):
    status = project.tune_dir / builder.jobs.STATUS_FILE
    return [sys.executable, "-c", STAND_IN, str(status), "train"]


builder.jobs.tune_command = stand_in_tune
runpy.run_path(str(TESTS.parent / "apps" / "chat.py"), run_name="__main__")
