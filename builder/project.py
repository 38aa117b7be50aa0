"""A project folder: its settings file, documents folder and index."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from builder.config import CONFIG_FILE, ProjectConfig, config_to_toml, load_config
from retrieval.index import write_atomic


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

    def save_config(self) -> None:
        """Write the settings file (atomically), e.g. after the documents folder changed."""
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.config_path, config_to_toml(self.config).encode("utf-8"))


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
