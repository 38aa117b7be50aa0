"""Terminal output shared by the ragtune programs (the CLI and the API server): the error
console, quiet third-party logging, progress bars, and the wrapper that turns a user-facing
failure into a one-line error."""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Callable

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from builder.config import ConfigError
from retrieval.config import StyleConfig

err = Console(stderr=True, highlight=False, soft_wrap=True)


def quiet_libraries() -> None:
    """Hide the libraries' own progress bars and info logs; ours say what is going on."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    # peft reads this renamed property when it wraps a model; nothing a user can act on.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)


def print_style_warnings(style: StyleConfig) -> None:
    """Print `style.warnings()`, a line each, as `ragtune tune` and `ragtune eval` start."""
    for warning in style.warnings():
        err.print(f"[yellow]warning:[/] style.{escape(warning)}")


def progress_bars() -> Progress:
    return Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def _tuning_errors() -> tuple[type[Exception], ...]:
    from builder.export import ExportError
    from builder.tune_layout import TuneError
    from finetune.checkpoints import ResumeError
    from finetune.formatting import ChatTemplateError
    from finetune.train import TrainError

    return (TuneError, ExportError, TrainError, ResumeError, ChatTemplateError)


def run_command(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run one command; a user-facing failure becomes a one-line error and exit code 2."""
    try:
        return handler(args)
    except ConfigError as error:
        err.print(f"[red]error:[/] {escape(str(error))}")
        return 2
    except KeyboardInterrupt:
        err.print("interrupted; what was built before is intact (tune: use --resume)")
        return 130
    except Exception as error:  # user-facing failures are typed; show them in one line
        from retrieval.answer import ModeError
        from retrieval.generation import AdapterError
        from retrieval.index import IndexLoadError
        from retrieval.models import ModelNotFoundError

        user_errors = (IndexLoadError, ModelNotFoundError, AdapterError, ModeError)
        user_errors += _tuning_errors()
        if isinstance(error, (*user_errors, FileNotFoundError)):
            err.print(f"[red]error:[/] {escape(str(error))}")
            return 2
        raise
