"""The project's documents folder as the app manages it: add uploaded files, list what is there
(and whether the index has it), remove files.

Uploads are untrusted: a name is accepted only as a plain file name with a supported suffix,
no folders, no hidden files, and the file is written only directly inside the documents folder.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from builder.project import Project
from retrieval.index import CHUNKS_FILE, IndexLayout, read_manifest, write_atomic
from retrieval.loaders import SUPPORTED_SUFFIXES
from retrieval.scan import ScanSkip, scan_documents
from retrieval.store import ChunkStore

# Most file systems allow 255 bytes per name.
_MAX_NAME_BYTES = 255
_ALLOWED_PUNCTUATION = set(" .-_()+,'&")


class DocumentError(ValueError):
    """An upload or removal that is refused; the message is a one-line reason."""


@dataclass(frozen=True)
class Document:
    """One supported file in the documents folder."""

    source: str
    """Path relative to the documents folder, '/' separators (as citations name it)."""
    size: int
    modified: float
    status: str
    """'indexed', 'changed' (its size differs from the indexed version) or 'not indexed'."""
    chunks: int = 0
    """Chunks the index holds for it (0 when not indexed)."""


@dataclass
class DocumentListing:
    """What the documents folder holds, compared with the live index."""

    documents: list[Document] = field(default_factory=list)
    skipped: list[ScanSkip] = field(default_factory=list)
    """Files passed over (unsupported type, symlink outside), with the reason."""
    removed: list[str] = field(default_factory=list)
    """Files the index still holds that are gone from the folder."""
    generation: int | None = None
    """The live index generation; None before the first build."""

    @property
    def index_up_to_date(self) -> bool:
        return (
            self.generation is not None
            and not self.removed
            and all(d.status == "indexed" for d in self.documents)
        )


@dataclass(frozen=True)
class SavedUpload:
    source: str
    replaced: bool
    """True when a file of that name was already there and was overwritten."""


def upload_name(name: str) -> str:
    """The name an uploaded file is stored under, or the reason it is refused.

    Letters (any script), digits and `` .-_()+,'&`` are kept; other characters become '_'.

    Raises:
        DocumentError: empty name, folder parts or path traversal, hidden file, control
            characters, or an unsupported type.
    """
    name = unicodedata.normalize("NFC", name.strip())
    if not name:
        raise DocumentError("the file has no name")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise DocumentError(f"{name!r}: folder paths are not allowed; upload the file itself")
    if name.startswith("."):
        raise DocumentError(f"{name!r}: hidden files (name starting with '.') are not accepted")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise DocumentError(f"{name!r}: the name contains control characters")
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        shown = f"'{suffix}'" if suffix else "(no extension)"
        raise DocumentError(
            f"{name!r}: unsupported file type {shown} (supported: {', '.join(SUPPORTED_SUFFIXES)})"
        )
    clean = "".join(c if c.isalnum() or c in _ALLOWED_PUNCTUATION else "_" for c in name)
    clean = " ".join(clean.split())
    stem, ending = clean[: -len(suffix)], clean[-len(suffix) :]
    while len((stem + ending).encode("utf-8")) > _MAX_NAME_BYTES:
        stem = stem[:-1]
    return stem.rstrip() + ending


def save_upload(project: Project, name: str, data: bytes) -> SavedUpload:
    """Store one uploaded file directly inside the project's documents folder.

    Args:
        project: the opened project.
        name: the name the browser sent (untrusted).
        data: the file's content.

    Returns:
        The stored name and whether it replaced a file.

    Raises:
        DocumentError: a refused name (see `upload_name`), an empty or too large file, or a
            name taken by a folder or a symbolic link.
    """
    stored = upload_name(name)
    limit_mb = project.config.ingest.max_file_mb
    if not data:
        raise DocumentError(f"{stored!r}: the file is empty")
    if len(data) > limit_mb * 1024 * 1024:
        raise DocumentError(
            f"{stored!r}: {len(data) / 1024 / 1024:.1f} MB is over the limit of {limit_mb:g} MB "
            "(setting ingest.max_file_mb)"
        )
    docs = project.docs_dir
    docs.mkdir(parents=True, exist_ok=True)
    target = docs / stored
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise DocumentError(f"{stored!r}: the name is taken by a folder or a link; rename the file")
    if target.resolve().parent != docs.resolve():
        raise DocumentError(f"{stored!r}: would be stored outside the documents folder")
    replaced = target.exists()
    write_atomic(target, data)
    return SavedUpload(stored, replaced)


def list_documents(project: Project) -> DocumentListing:
    """The supported files in the documents folder and their state in the live index.

    A missing documents folder lists as empty (a new project before its first upload).
    """
    listing = DocumentListing()
    indexed: dict[str, tuple[int, int]] = {}
    generation = IndexLayout(project.index_root).current()
    if generation is not None and (generation / CHUNKS_FILE).is_file():
        listing.generation = read_manifest(generation).generation
        with ChunkStore(generation / CHUNKS_FILE, readonly=True) as store:
            indexed = {s: (r.size, r.n_chunks) for s, r in store.files().items()}
    if project.docs_dir.is_dir():
        found, listing.skipped = scan_documents(project.docs_dir, SUPPORTED_SUFFIXES)
    else:
        found = []
    for item in found:
        size, chunks = indexed.get(item.source, (None, 0))
        status = "not indexed" if size is None else "indexed" if size == item.size else "changed"
        modified = item.path.stat().st_mtime
        listing.documents.append(Document(item.source, item.size, modified, status, chunks))
    present = {item.source for item in found}
    listing.removed = sorted(source for source in indexed if source not in present)
    return listing


def remove_document(project: Project, source: str) -> None:
    """Delete one file from the documents folder (the index changes at the next build).

    Folders left empty by the removal are removed too.

    Args:
        project: the opened project.
        source: the file's path relative to the documents folder, as `list_documents` gives it.

    Raises:
        DocumentError: a path outside the documents folder, a hidden file, or no such file.
    """
    parts = PurePosixPath(source).parts
    if not parts or PurePosixPath(source).is_absolute() or ".." in parts or "\\" in source:
        raise DocumentError(f"{source!r}: not a path inside the documents folder")
    if any(part.startswith(".") for part in parts):
        raise DocumentError(f"{source!r}: hidden files are not managed here")
    root = project.docs_dir.resolve()
    path = root.joinpath(*parts)
    # The file itself may be a link (it is unlinked, not followed); its folder must be inside.
    if path.parent.resolve() != root and root not in path.parent.resolve().parents:
        raise DocumentError(f"{source!r}: not a path inside the documents folder")
    if not (path.is_file() or path.is_symlink()):
        raise DocumentError(f"{source!r}: no such document")
    path.unlink()
    folder = path.parent
    while folder != root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
