"""Hostile files and local attackers (issue 12, items 3-6): decompression bombs and size caps,
files swapped for a FIFO or an outside link after the scan, names with bidi controls, planted
links at an atomic write's temp path, and web pages driving the server or the app."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import docx
import httpx
import pytest
import uvicorn
from conftest import write_docs
from fpdf import FPDF

import builder.build
from apps.origin_policy import OriginPolicy
from apps.server import create_app
from builder.app_cli import app_command
from builder.build import build
from builder.config import ConfigError, load_config
from finetune.data import ChatExample, write_examples_jsonl
from finetune.pairs import write_jsonl_atomic
from retrieval.documents import LoadError, LoadLimits
from retrieval.index import write_atomic
from retrieval.loaders import load_document
from retrieval.scan import document_sha256, escape_name, scan_documents

MB = 1024 * 1024
GOOD = "# Rotor\n\nThe rotor lasts 5 years.\n"


def within(seconds: float, call: Callable[[], object]) -> object:
    """Run `call` in a thread and fail if it has not returned after `seconds` (a hang)."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed back to the test thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]


def docx_bytes(text: str = "Quarterly revenue rose.") -> bytes:
    document = docx.Document()
    document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def zip_bomb_docx(zeros: int = 50 * MB) -> bytes:
    """A valid .docx with one media part of `zeros` zero bytes: about 50 KB on disk."""
    buffer = io.BytesIO(docx_bytes())
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("word/media/image1.png", bytes(zeros))
    return buffer.getvalue()


def pdf_bytes(pages: int, text: str = "Revenue rose.") -> bytes:
    pdf = FPDF()
    pdf.set_font("helvetica", size=8)
    for _ in range(pages):
        pdf.add_page()
        pdf.multi_cell(w=0, text=text)
    return bytes(pdf.output())


# --- decompression bombs and caps ---------------------------------------------------------------


def test_zip_bomb_docx_is_refused_while_small_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "bomb.docx"
    path.write_bytes(zip_bomb_docx())
    assert path.stat().st_size < MB
    limits = LoadLimits(max_unpacked_bytes=20 * MB)
    with pytest.raises(LoadError, match="unpacks past the 20.0 MB limit .*max_unpacked_mb"):
        within(10, lambda: load_document(path, "bomb.docx", 10 * MB, limits))
    # Under a limit that fits, the same file loads.
    loaded = load_document(path, "bomb.docx", 10 * MB, LoadLimits(max_unpacked_bytes=60 * MB))
    assert loaded.text == "Quarterly revenue rose."


def test_docx_part_that_understates_its_size_is_refused(tmp_path: Path) -> None:
    """The central directory says 100 bytes; the part inflates to 5 MB. Reading stops at the
    declared size and the checksum fails: refused as damaged, nothing large is held."""
    data = bytearray(zip_bomb_docx(5 * MB))
    name = b"word/media/image1.png"
    entry = data.rindex(b"PK\x01\x02", 0, data.rindex(name))  # its central directory entry
    data[entry + 24 : entry + 28] = (100).to_bytes(4, "little")  # uncompressed size
    path = tmp_path / "liar.docx"
    path.write_bytes(bytes(data))
    with pytest.raises(LoadError, match="not a valid .docx file"):
        within(10, lambda: load_document(path, "liar.docx", 10 * MB, LoadLimits()))


def test_pdf_page_and_character_caps(tmp_path: Path) -> None:
    path = tmp_path / "filing.pdf"
    path.write_bytes(pdf_bytes(5))
    with pytest.raises(LoadError, match="5 pages, over the 3-page limit .*max_pages"):
        load_document(path, "filing.pdf", 10 * MB, LoadLimits(max_pages=3))
    path.write_bytes(pdf_bytes(1, "word " * 2000))
    with pytest.raises(LoadError, match="over the 1,000-character limit .*max_chars"):
        load_document(path, "filing.pdf", 10 * MB, LoadLimits(max_chars=1000))
    assert load_document(path, "filing.pdf", 10 * MB).blocks  # the defaults are generous


def test_text_character_cap(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_text("word " * 400)
    with pytest.raises(LoadError, match="1,000-character limit"):
        load_document(path, "long.txt", MB, LoadLimits(max_chars=1000))


@pytest.mark.parametrize(
    "setting",
    [
        "ingest.max_pages=0",
        "ingest.max_chars=-1",
        "ingest.max_unpacked_mb=0",
        "ingest.parse_workers=0",
        "ingest.parse_timeout_s=0",
        "ingest.parse_memory_mb=-1",
    ],
)
def test_caps_are_validated(tmp_path: Path, setting: str) -> None:
    with pytest.raises(ConfigError, match=setting.split("=")[0]):
        load_config(tmp_path / "ragtune.toml", [setting])


def test_build_skips_every_hostile_file_and_indexes_the_good_one(project_factory, encoder):
    project = project_factory(
        {"good.md": GOOD}, ["ingest.max_unpacked_mb=20", "ingest.max_pages=3"]
    )
    build(project, encoder=encoder)
    docs = project.docs_dir
    secret = docs.parent / "secret.md"
    secret.write_text("# Secret\n\nThe password is hunter2.\n")
    write_docs(
        docs,
        {
            "bomb.docx": zip_bomb_docx(),
            "pages.pdf": pdf_bytes(5),
            "invoice\u202efdp.md": "# Bidi\n\nbidi text\n",
            "colour\x1b[31m.md": "# Escape\n\nescape text\n",
        },
    )
    with open(docs / "sparse.txt", "wb") as handle:
        handle.truncate(10 * 1024 * MB)  # 10 GB, no blocks on disk: refused by size, unread
    os.mkfifo(docs / "pipe.md")
    (docs / "out.md").symlink_to(secret)
    started = time.monotonic()
    report = within(60, lambda: build(project, encoder=encoder))
    assert time.monotonic() - started < 30
    reasons = {skip.source: skip.reason for skip in report.skipped}
    assert set(reasons) == {
        "bomb.docx",
        "pages.pdf",
        "invoice\\u202efdp.md",
        "colour\\x1b[31m.md",
        "sparse.txt",
        "pipe.md",
        "out.md",
    }
    assert "unpacks past the 20.0 MB limit" in reasons["bomb.docx"]
    assert "5 pages" in reasons["pages.pdf"]
    assert "bidi" in reasons["invoice\\u202efdp.md"]
    assert "10240.0 MB, over the 50.0 MB limit" in reasons["sparse.txt"]
    assert "not a regular file" in reasons["pipe.md"]
    assert "outside" in reasons["out.md"]
    assert all("\n" not in reason for reason in reasons.values())
    assert report.unchanged == ["good.md"]
    assert report.total_files == 1


# --- files swapped after the scan ------------------------------------------------------------


def test_file_swapped_for_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "report.md"
    os.mkfifo(path)
    with pytest.raises(LoadError, match="not a regular file"):
        within(5, lambda: load_document(path, "report.md", MB, root=tmp_path))
    with pytest.raises(LoadError, match="not a regular file"):
        within(5, lambda: document_sha256(path, MB, tmp_path))


def test_file_swapped_for_a_link_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    secret = tmp_path / "secret.md"
    secret.write_text("# Secret\n\nhunter2\n")
    (docs / "report.md").symlink_to(secret)
    with pytest.raises(LoadError, match="outside the documents folder"):
        load_document(docs / "report.md", "report.md", MB, root=docs)
    with pytest.raises(LoadError, match="outside the documents folder"):
        document_sha256(docs / "report.md", MB, docs)
    # A link inside the folder still works.
    (docs / "real.md").write_text(GOOD)
    (docs / "alias.md").symlink_to(docs / "real.md")
    assert "rotor lasts" in load_document(docs / "alias.md", "alias.md", MB, root=docs).text


def test_link_that_appears_between_resolving_and_opening_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race O_NOFOLLOW closes: the path resolved to itself, then became a link."""
    (tmp_path / "target.md").write_text(GOOD)
    (tmp_path / "report.md").symlink_to(tmp_path / "target.md")
    monkeypatch.setattr("retrieval.scan.os.path.realpath", lambda path: str(path))
    with pytest.raises(LoadError, match="became a symbolic link"):
        load_document(tmp_path / "report.md", "report.md", MB, root=tmp_path)


def test_build_refuses_files_swapped_after_the_scan(project_factory, encoder, monkeypatch):
    project = project_factory({"good.md": GOOD, "pipe.md": "# Pipe\n\npipe\n", "out.md": "x y"})
    secret = project.docs_dir.parent / "secret.md"
    secret.write_text("# Secret\n\nThe password is hunter2.\n")
    real_scan = builder.build.scan_documents

    def scan_then_swap(*args):
        found = real_scan(*args)
        (project.docs_dir / "pipe.md").unlink()
        os.mkfifo(project.docs_dir / "pipe.md")
        (project.docs_dir / "out.md").unlink()
        (project.docs_dir / "out.md").symlink_to(secret)
        return found

    monkeypatch.setattr(builder.build, "scan_documents", scan_then_swap)
    report = within(60, lambda: build(project, encoder=encoder))
    reasons = {skip.source: skip.reason for skip in report.skipped}
    assert "not a regular file" in reasons["pipe.md"]
    assert "outside the documents folder" in reasons["out.md"]
    assert report.added == ["good.md"]


def test_control_and_bidi_names_are_refused_and_shown_escaped(tmp_path: Path) -> None:
    names = ["invoice\u202efdp.md", "a\u2066b.md", "line\u2028break.md", "bell\x07.md"]
    for name in [*names, "résumé 日本.md"]:
        (tmp_path / name).write_text(GOOD)
    found, skipped = scan_documents(tmp_path, (".md",))
    assert [f.source for f in found] == ["résumé 日本.md"]
    shown = sorted(skip.source for skip in skipped)
    assert shown == sorted(escape_name(name) for name in names)
    assert all(s.isprintable() for s in shown)
    assert escape_name("invoice\u202efdp.md") == "invoice\\u202efdp.md"


# --- atomic writes ------------------------------------------------------------------------------


WRITERS = {
    "write_atomic": lambda path: write_atomic(path, b'{"ok": 1}\n'),
    "write_jsonl_atomic": lambda path: write_jsonl_atomic(path, [{"ok": 1}]),
    "write_examples_jsonl": lambda path: write_examples_jsonl(
        [ChatExample([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])],
        path,
    ),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_planted_link_at_the_temp_path_does_not_redirect_the_write(
    tmp_path: Path, writer: str
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    target = tmp_path / "project" / "status.json"
    target.parent.mkdir()
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    temporary.symlink_to(victim)
    WRITERS[writer](target)
    assert victim.read_text() == "keep me\n"
    assert '"ok"' in target.read_text() or '"user"' in target.read_text()
    assert not target.is_symlink()
    assert not os.path.lexists(temporary)


# --- the server and the app refuse foreign pages ------------------------------------------------


@contextlib.contextmanager
def running(app) -> Iterator[tuple[str, int]]:
    """Serve `app` with uvicorn on a free loopback port; yields (base URL, port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        port = sock.getsockname()[1]
        yield f"http://127.0.0.1:{port}", port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class FakeEngine(SimpleNamespace):
    """Enough of an AnswerEngine for the routes that list models; answering is never reached."""

    def __init__(self) -> None:
        super().__init__(
            generator=SimpleNamespace(config=SimpleNamespace(max_new_tokens=8)),
            default_mode="rag",
            modes=("rag",),
        )

    def check_mode(self, mode: str) -> str:
        raise AssertionError("a refused request reached the engine")


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    with running(create_app(FakeEngine())) as where:
        yield where


def test_requests_without_origin_or_from_the_servers_own_origin_pass(server) -> None:
    base, port = server
    own = [f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"https://[::1]:{port}"]
    for origin in (None, *own):
        headers = {"Origin": origin} if origin else {}
        response = httpx.get(f"{base}/v1/models", headers=headers)
        assert response.status_code == 200, origin
    assert httpx.get(f"{base}/v1/models", headers={"Host": f"localhost:{port}"}).status_code == 200


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "http://127.0.0.1:1", "null", "http://localhost.evil.example:{port}"],
)
def test_foreign_origins_get_403_on_every_route(server, origin: str) -> None:
    base, port = server
    headers = {"Origin": origin.format(port=port)}
    for method, path in (("GET", "/v1/models"), ("GET", "/openapi.json"), ("GET", "/docs")):
        response = httpx.request(method, f"{base}{path}", headers=headers)
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "forbidden_origin"
    # A text/plain POST needs no CORS preflight: the refusal must come before the body is read.
    response = httpx.post(
        f"{base}/v1/chat/completions",
        headers={**headers, "Content-Type": "text/plain"},
        content=b'{"model": "ragtune", "messages": [{"role": "user", "content": "hi"}]}',
    )
    assert response.status_code == 403


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example"])
def test_rebound_host_names_get_403(server, host: str) -> None:
    base, port = server
    response = httpx.get(f"{base}/v1/models", headers={"Host": host.format(port=port)})
    assert response.status_code == 403
    assert "Host" in response.json()["error"]["message"]


def test_allow_lists_admit_configured_pages_and_names() -> None:
    policy = OriginPolicy.allowing(["https://App.example/"], ["ragtune.lan."])
    with running(create_app(FakeEngine(), policy=policy)) as (base, port):
        page = httpx.get(f"{base}/v1/models", headers={"Origin": "https://app.example"})
        assert page.status_code == 200
        assert page.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.get(f"{base}/v1/models", headers={"Origin": "https://evil.example"})
        assert other.status_code == 403
        named = httpx.get(f"{base}/v1/models", headers={"Host": f"ragtune.lan:{port}"})
        assert named.status_code == 200


def test_app_launcher_sets_the_safe_streamlit_options(tmp_path: Path) -> None:
    command = app_command(tmp_path, 8600)
    options = command[: command.index("--")]
    pairs = list(zip(options[5::2], options[6::2]))
    assert ("--server.enableXsrfProtection", "true") in pairs
    assert ("--server.enableCORS", "true") in pairs
    hosts = {value for key, value in pairs if key == "--server.allowedHosts"}
    assert hosts == {"localhost", "127.0.0.1", "::1"}
