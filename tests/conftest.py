"""Shared fixtures: a fake keyword encoder (exact, model-free retrieval) and small projects."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from builder.project import Project, open_project

KEYWORDS = (
    "centrifuge",
    "rotor",
    "warranty",
    "vacation",
    "laptop",
    "password",
    "invoice",
    "refund",
    "badge",
    "parking",
    "printer",
    "firmware",
    "calibration",
    "error",
    "battery",
    "shipping",
)


class KeywordEncoder:
    """Embeds a text as the one-hot set of the KEYWORDS it contains (plus a bias dimension), so
    a question about 'rotor' matches exactly the chunks that mention 'rotor'."""

    name = "fake-keywords"
    max_tokens = 512

    def __init__(self, keywords: tuple[str, ...] = KEYWORDS) -> None:
        self.keywords = keywords
        self.dim = len(keywords) + 1
        self.calls = 0
        self.texts_encoded = 0

    def load(self) -> None:
        """Nothing to load: the vectors are computed from the text."""

    def encode(self, texts):
        self.calls += 1
        self.texts_encoded += len(texts)
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = set(re.findall(r"[a-z]+", text.lower()))
            for column, keyword in enumerate(self.keywords):
                if keyword in words:
                    vectors[row, column] = 1.0
            vectors[row, -1] = 0.1
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def count_tokens(self, text: str) -> int:
        return len(text.split())


@pytest.fixture
def encoder() -> KeywordEncoder:
    return KeywordEncoder()


def write_docs(folder: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


BASIC_DOCS = {
    "manuals/centrifuge.md": "# Centrifuge\n\nReplace the rotor after 12000 hours.\n\n"
    "## Errors\n\nError 217 means the lid lock failed.\n",
    "handbook/vacation.txt": "Employees earn 2 vacation days per month. Parking is free.",
    "handbook/laptops.md": "# Laptops\n\nEvery laptop needs a password of 14 characters.\n",
    "billing/refunds.md": "# Refunds\n\nA refund is paid within 10 days of the invoice.\n",
}


@pytest.fixture
def project_factory(tmp_path: Path):
    """Make a project over a documents folder; small chunks so that tests see several."""

    def make(
        files: dict[str, str | bytes] | None = None, overrides: list[str] | None = None
    ) -> Project:
        docs = tmp_path / "docs"
        docs.mkdir(exist_ok=True)
        write_docs(docs, BASIC_DOCS if files is None else files)
        settings = ["ingest.chunk_tokens=40", "ingest.chunk_overlap=5", *(overrides or [])]
        project = open_project(tmp_path / "project", settings, docs=docs)
        project.save_config()
        return project

    return make


def all_chunks(project: Project) -> list:
    """Every chunk of the project's current index."""
    from retrieval.config import IndexConfig
    from retrieval.index import open_index

    index = open_index(project.index_root, IndexConfig())
    try:
        return list(index.store.iter_chunks())
    finally:
        index.close()
