"""A project folder: its settings file, documents folder and index."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from builder.config import (
    CONFIG_FILE,
    ProjectConfig,
    config_from_dict,
    config_to_toml,
    load_config,
)
from retrieval.index import read_pointer, write_atomic

CURRENT_ADAPTER = "CURRENT"


@dataclass
class Project:
    """Paths and validated settings of one project."""

    root: Path
    config: ProjectConfig

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def docs_dir(self) -> Path:
        return (self.root / self.config.docs).resolve()

    @property
    def index_root(self) -> Path:
        return self.root / "index"

    @property
    def tune_dir(self) -> Path:
        """Synthesized pairs, the train/eval split and the formatted training set."""
        return self.root / "tune"

    @property
    def adapters_dir(self) -> Path:
        """One folder per tuning run; `CURRENT` names the run the engine uses."""
        return self.root / "adapters"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    def current_adapter(self) -> Path | None:
        """The adapter of the newest finished tuning run, or None when there is none.

        Raises:
            AdapterError: adapters/CURRENT names anything but a run folder next to it.
        """
        try:
            name = read_pointer(self.adapters_dir / CURRENT_ADAPTER)
        except ValueError as error:
            from retrieval.generation import AdapterError

            raise AdapterError(
                f"{error}: delete it, or write the name of a run folder there"
            ) from error
        if name is None:
            return None
        run = self.adapters_dir / name / "adapter"
        return run if run.is_dir() else None

    def set_current_adapter(self, run_name: str) -> None:
        write_atomic(self.adapters_dir / CURRENT_ADAPTER, f"{run_name}\n".encode())

    def save_config(self) -> None:
        """Write the settings file (atomically), e.g. after the documents folder changed."""
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.config_path, config_to_toml(self.config).encode("utf-8"))

    def save_style(self, style: dict[str, Any]) -> None:
        """Write `style` (field → value) into the settings file's [style] section, every value
        checked first; the other sections stay as the file has them (command-line overrides of
        this session are not written).

        Raises:
            ConfigError: an invalid value; nothing is written.
        """
        data = asdict(load_config(self.config_path))
        data["style"] = {**data["style"], **style}
        checked = config_from_dict(data, str(self.config_path))
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.config_path, config_to_toml(checked).encode("utf-8"))
        self.config.style = checked.style


def open_project(
    root: Path, overrides: list[str] | None = None, docs: Path | None = None
) -> Project:
    """Load a project's settings (defaults for a new project) and apply overrides.

    Args:
        root: the project folder; it need not exist yet.
        overrides: `section.key=value` strings, applied for this run only.
        docs: a documents folder to use instead of the configured one.

    Raises:
        ConfigError: invalid settings, all reported at once.
    """
    root = Path(root)
    config = load_config(root / CONFIG_FILE, overrides)
    if docs is not None:
        config.docs = _relative_if_inside(Path(docs), root)
    return Project(root=root, config=config)


def record_docs(root: Path, docs: Path | None) -> None:
    """Write the settings file with `docs` as the documents folder (creating the file with every
    default for a new project), leaving out any command-line overrides."""
    open_project(root, docs=docs).save_config()


def _relative_if_inside(docs: Path, root: Path) -> str:
    """Keep the documents path relative when it sits inside the project, so the folder can move."""
    docs_abs = docs.resolve()
    root_abs = root.resolve()
    if docs_abs == root_abs or root_abs in docs_abs.parents:
        return os.path.relpath(docs_abs, root_abs)
    return str(docs_abs)
