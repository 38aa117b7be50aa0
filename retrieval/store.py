"""The chunk store: one SQLite file holding every chunk, its embedding, and the files it came from.

Row numbers (`chunks.row`) are the positions of the chunks in the vector and keyword indexes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.documents import Chunk

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    source TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    n_chunks INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    row INTEGER,
    chunk_id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL REFERENCES files(source),
    position INTEGER NOT NULL,
    page INTEGER,
    section TEXT,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    text TEXT NOT NULL,
    title TEXT,
    table_header TEXT,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source, position);
CREATE UNIQUE INDEX IF NOT EXISTS chunks_row ON chunks(row);
"""

_CHUNK_COLUMNS = "chunk_id, source, text, start, end, page, section, position, title, table_header"
_MARKS = ", ".join("?" * 11)  # the chunk columns and the embedding


@dataclass(frozen=True)
class FileRecord:
    """A document as it was when its chunks were stored."""

    source: str
    sha256: str
    size: int
    n_chunks: int


def _chunk_from_row(row: tuple) -> Chunk:
    return Chunk(*row)


class ChunkStore:
    """Chunks, embeddings and file records in one SQLite database."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            self._db = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, check_same_thread=False
            )
        else:
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.executescript(_SCHEMA)
            self._db.commit()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ChunkStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- files ------------------------------------------------------------------------------

    def files(self) -> dict[str, FileRecord]:
        rows = self._db.execute("SELECT source, sha256, size, n_chunks FROM files")
        return {row[0]: FileRecord(*row) for row in rows}

    def replace_file(
        self, record: FileRecord, chunks: Sequence[Chunk], embeddings: np.ndarray
    ) -> None:
        """Store a file's chunks in place of any older version, in one transaction."""
        if len(chunks) != len(embeddings):
            raise ValueError(f"{len(chunks)} chunks but {len(embeddings)} embeddings")
        vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
        with self._db:
            self._delete(record.source)
            self._db.execute(
                "INSERT INTO files(source, sha256, size, n_chunks) VALUES (?, ?, ?, ?)",
                (record.source, record.sha256, record.size, len(chunks)),
            )
            self._db.executemany(
                f"INSERT INTO chunks({_CHUNK_COLUMNS}, embedding) VALUES ({_MARKS})",
                (
                    (
                        c.chunk_id,
                        c.source,
                        c.text,
                        c.start,
                        c.end,
                        c.page,
                        c.section,
                        c.position,
                        c.title,
                        c.table_header,
                        vector.tobytes(),
                    )
                    for c, vector in zip(chunks, vectors)
                ),
            )

    def remove_file(self, source: str) -> None:
        with self._db:
            self._delete(source)

    def _delete(self, source: str) -> None:
        self._db.execute("DELETE FROM chunks WHERE source = ?", (source,))
        self._db.execute("DELETE FROM files WHERE source = ?", (source,))

    # -- rows -------------------------------------------------------------------------------

    def renumber(self) -> int:
        """Give chunks dense row numbers 0..n-1 in (source, position) order; return n."""
        ids = [
            row[0] for row in self._db.execute("SELECT id FROM chunks ORDER BY source, position")
        ]
        with self._db:
            self._db.execute("UPDATE chunks SET row = NULL")
            self._db.executemany(
                "UPDATE chunks SET row = ? WHERE id = ?",
                ((row, id_) for row, id_ in enumerate(ids)),
            )
        return len(ids)

    def count(self) -> int:
        """Chunks stored."""
        return int(self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def embeddings(self, dim: int) -> np.ndarray:
        """All embeddings in row order, as one (n, dim) float32 array."""
        blobs = [row[0] for row in self._db.execute("SELECT embedding FROM chunks ORDER BY row")]
        if not blobs:
            return np.zeros((0, dim), dtype=np.float32)
        return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)

    def iter_embeddings(self, dim: int, rows_per_shard: int) -> Iterable[np.ndarray]:
        """All embeddings in row order, as (at most rows_per_shard, dim) float32 blocks, so that
        an index can be filled without every vector in memory at once."""
        cursor = self._db.execute("SELECT embedding FROM chunks ORDER BY row")
        while blobs := [row[0] for row in cursor.fetchmany(rows_per_shard)]:
            yield np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)

    def embeddings_at(self, rows: Sequence[int], dim: int) -> np.ndarray:
        """The embeddings at the given row numbers, in the order asked, as (n, dim) float32."""
        wanted = [int(r) for r in rows]
        found: dict[int, bytes] = {}
        # SQLite caps the parameters of one statement; 500 rows a query stays well under it.
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            query = f"SELECT row, embedding FROM chunks WHERE row IN ({marks})"
            found.update(self._db.execute(query, part))
        if not wanted:
            return np.zeros((0, dim), dtype=np.float32)
        joined = b"".join(found[r] for r in wanted)
        return np.frombuffer(joined, dtype=np.float32).reshape(len(wanted), dim)

    def iter_chunks(self) -> Iterable[Chunk]:
        """All chunks in row order."""
        for row in self._db.execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks ORDER BY row"):
            yield _chunk_from_row(row)

    def chunks_at(self, rows: Sequence[int]) -> list[Chunk]:
        """The chunks at the given row numbers, in the order asked."""
        wanted = [int(r) for r in rows]
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        found = {
            row[0]: _chunk_from_row(row[1:])
            for row in self._db.execute(
                f"SELECT row, {_CHUNK_COLUMNS} FROM chunks WHERE row IN ({marks})", wanted
            )
        }
        return [found[r] for r in wanted]

    def backup_to(self, path: Path) -> None:
        """Copy the whole database to `path` consistently (SQLite's online backup)."""
        target = sqlite3.connect(path)
        try:
            self._db.backup(target)
        finally:
            target.close()
