"""Folders of PDF, HTML, DOCX and Markdown files served with page- and section-exact citations, their
originals, and a sync that removes deleted files and keeps the last good version of a broken one."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from indexer.formats.extract import extract
from indexer.formats.extracted import Extracted, Limits
from indexer.model.embedding import Embedder
from indexer.store.originals import ORIGINALS_DIR
from indexer.text import documents
from service.api.app import create_app
from service.engine import Engine
from service.settings import Settings
from service.startup import index_sources
from tests.formats import docx_bytes, html_page, pdf_bytes

PDF_PAGES = [
    "The harbour master logged forty-one fishing boats leaving before dawn on Monday.",
    "A storm warning reached the harbour at noon and every boat was called back to port.",
    "The lighthouse keeper counted the boats home; the last one tied up at half past nine.",
]
# Enough words that each section of a page is a passage of its own.
FILLER = "The valley has grown fruit for two hundred years and its growers keep careful records. " * 6


def write_folder(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "harbour.pdf").write_bytes(pdf_bytes(PDF_PAGES, title="Harbour log", header="Harbour Office"))
    (folder / "orchard.html").write_text(
        html_page(
            [("h1", "Orchard"), ("p", FILLER + "Apples ripen in September in the valley orchards."), ("h2", "Pests"),
             ("p", "Codling moths lay their eggs on young apples in early summer. " + FILLER)],
            title="Orchard notes",
        )
    )  # fmt: skip
    (folder / "bees.docx").write_bytes(
        docx_bytes([("Heading 1", "Hives"), ("Normal", "Each hive holds about fifty thousand worker bees.")])
    )
    (folder / "garden.md").write_text("# Garden\n\n## Soil\n\nTomatoes want loose soil rich in compost.\n")


def search(client: TestClient, question: str) -> dict:
    response = client.get("/search", params={"q": question, "k": 3})
    assert response.status_code == 200, response.text
    return response.json()["results"][0]


def check_exact(client: TestClient, result: dict) -> None:
    citation = result["citation"]
    text = client.get(f"/documents/{citation['doc_id']}").json()["text"]
    assert text[citation["start"] : citation["end"]] == result["text"]


def test_files_are_cited_by_page_and_section_and_served_as_originals(tmp_path: Path, embedder: Embedder) -> None:
    folder, index = tmp_path / "docs", tmp_path / "index"
    write_folder(folder)
    settings = Settings(index=index, sources=str(folder))
    index_sources(settings, embedder, show_progress=False)
    with TestClient(create_app(engine=Engine.load(Settings(index=index), embedder=embedder))) as client:
        storm = search(client, "when did the storm warning reach the harbour")
        assert storm["citation"]["doc_id"] == "harbour"
        assert storm["citation"]["title"] == "Harbour log"
        assert "storm warning" in storm["text"]
        page = storm["citation"]["page"]
        assert PDF_PAGES[page - 1].split()[3] in storm["text"] or storm["citation"]["page_end"] >= 2
        assert 1 <= page <= storm["citation"]["page_end"] <= 3
        check_exact(client, storm)

        moths = search(client, "which insect lays eggs on apples")
        assert moths["citation"]["doc_id"] == "orchard"
        assert moths["citation"]["section"] == "Orchard › Pests"
        assert moths["citation"]["page"] is None
        check_exact(client, moths)

        bees = search(client, "how many worker bees live in a hive")
        assert (bees["citation"]["doc_id"], bees["citation"]["section"]) == ("bees", "Hives")
        soil = search(client, "what soil do tomatoes need")
        assert (soil["citation"]["doc_id"], soil["citation"]["section"]) == ("garden", "Garden › Soil")

        original = client.get("/documents/harbour/source")
        assert original.status_code == 200
        assert original.headers["content-type"] == "application/pdf"
        assert original.content == (folder / "harbour.pdf").read_bytes()
        page_html = client.get("/documents/orchard/source")
        assert page_html.headers["content-type"].startswith("text/html")
        assert page_html.headers["content-security-policy"] == "sandbox"  # the page's script never runs as ours
        markdown = client.get("/documents/garden/source")
        assert markdown.text == (folder / "garden.md").read_text()
        assert client.get("/documents/nope/source").status_code == 404

        page = client.get("/", params={"q": "when did the storm warning reach the harbour"}).text
        assert f"page {storm['citation']['page']}" in page
        assert f'href="/documents/harbour/source#page={storm["citation"]["page"]}"' in page
        view = client.get(
            "/view/harbour", params={"start": storm["citation"]["start"], "end": storm["citation"]["end"]}
        )
        assert f"page {storm['citation']['page']}" in view.text and "the original PDF" in view.text
        cited = client.get(
            "/view/orchard", params={"start": moths["citation"]["start"], "end": moths["citation"]["end"]}
        )
        assert "§ Orchard › Pests" in cited.text


def test_sync_removes_deleted_files_and_keeps_a_broken_files_last_version(tmp_path: Path, embedder: Embedder) -> None:
    folder, index = tmp_path / "docs", tmp_path / "index"
    write_folder(folder)
    settings = Settings(index=index, sources=str(folder))
    index_sources(settings, embedder, show_progress=False)
    pdf_hash = hashlib.sha256((folder / "harbour.pdf").read_bytes()).hexdigest()
    kept = index / ORIGINALS_DIR / pdf_hash[:2] / pdf_hash
    assert kept.is_file()

    (folder / "bees.docx").unlink()  # deleted: its document goes
    (folder / "harbour.pdf").write_bytes(b"%PDF-1.7 truncated")  # broken: its last good version stays
    extracted: list[str] = []

    def counting(data: bytes, name: str = "", limits: Limits | None = None) -> Extracted:
        extracted.append(name)
        return extract(data, name, limits)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(documents, "extract", counting)
        index_sources(settings, embedder, show_progress=False)
    # An unchanged file with an original (the page) is not extracted again; Markdown is its own text.
    assert sorted(extracted) == ["garden.md", "harbour.pdf"]
    with TestClient(create_app(engine=Engine.load(Settings(index=index), embedder=embedder))) as client:
        ids = {d["doc_id"] for d in client.get("/documents").json()["documents"]}
        assert ids == {"harbour", "orchard", "garden"}
        assert client.get("/documents/harbour/source").content.startswith(b"%PDF")
        assert search(client, "storm warning harbour")["citation"]["page"] is not None

    (folder / "harbour.pdf").unlink()
    index_sources(settings, embedder, show_progress=False)
    assert not kept.exists()  # no document keeps it any more


KEY = "upload-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def upload_client(tmp_path: Path, embedder: Embedder, **settings: object) -> TestClient:
    index = tmp_path / "index"
    config = Settings(index=index, api_key=KEY, **settings)  # type: ignore[arg-type]
    from service.startup import prepare_index

    prepare_index(config, embedder)
    return TestClient(create_app(engine=Engine.load(config, embedder=embedder), settings=config))


def test_uploads_index_good_files_and_report_bad_ones(tmp_path: Path, embedder: Embedder) -> None:
    pdf = pdf_bytes(PDF_PAGES, title="Harbour log")
    files = [
        ("file", ("Harbour Log.pdf", pdf, "application/pdf")),
        ("file", ("bees.docx", docx_bytes([("Heading 1", "Hives"), ("Normal", "Fifty thousand bees.")]), "x/y")),
        ("file", ("locked.pdf", pdf_bytes(PDF_PAGES, password="x"), "application/pdf")),
        ("file", ("../../etc/notes.txt", b"A note that climbs no paths.", "text/plain")),
    ]
    with upload_client(tmp_path, embedder) as client:
        assert client.post("/documents", files=files).status_code == 401  # the write key is needed
        response = client.post("/documents", files=files, headers=AUTH)
        assert response.status_code == 201, response.text
        body = response.json()
        assert sorted(d["doc_id"] for d in body["documents"]) == ["Harbour_Log", "bees", "notes"]
        assert body["failed"] == [{"file": "locked.pdf", "reason": "an encrypted PDF: it needs a password to be read"}]
        assert client.get("/documents/Harbour_Log/source").content == pdf
        assert client.get("/documents/notes").json()["metadata"] == {"file": "notes.txt"}
        storm = search(client, "when did the storm warning reach the harbour")
        assert storm["citation"]["doc_id"] == "Harbour_Log" and storm["citation"]["page"] is not None
        check_exact(client, storm)

        again = client.post("/documents", files=files[:1], headers=AUTH)
        assert again.status_code == 409 and "?replace=true" in again.json()["detail"]
        changed = pdf_bytes([*PDF_PAGES, "A fourth page about the harbour cat."], title="Harbour log")
        replaced = client.post(
            "/documents", params={"replace": "true"}, files=[("file", ("Harbour Log.pdf", changed, "x"))], headers=AUTH
        )
        assert replaced.status_code == 201 and replaced.json()["documents"][0]["created"] is False
        assert client.get("/documents/Harbour_Log/source").content == changed
        old = hashlib.sha256(pdf).hexdigest()
        assert not (tmp_path / "index" / ORIGINALS_DIR / old[:2] / old).exists()  # the replaced original went

        empty = client.post("/documents", files=[("file", ("empty.txt", b"", "text/plain"))], headers=AUTH)
        assert empty.status_code == 422 and "empty.txt: an empty file" in empty.json()["detail"]
        no_files = client.post("/documents", data={"note": "x"}, files=[], headers=AUTH)
        assert no_files.status_code in (400, 422)
        json_write = client.post("/documents", json={"doc_id": "j", "text": "JSON writes still work."}, headers=AUTH)
        assert json_write.status_code == 201


def test_uploads_are_bounded(tmp_path: Path, embedder: Embedder) -> None:
    with upload_client(tmp_path, embedder, max_upload_bytes=50_000, max_upload_files=2) as client:
        big = [("file", ("big.txt", b"word " * 20_000, "text/plain"))]
        response = client.post("/documents", files=big, headers=AUTH)
        assert response.status_code == 413 and "CITELINE_MAX_UPLOAD_BYTES" in response.json()["detail"]
        many = [("file", (f"f{i}.txt", b"some text", "text/plain")) for i in range(3)]
        assert client.post("/documents", files=many, headers=AUTH).status_code == 400


def wait_for(check: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_a_background_upload_is_a_job_with_counts_reasons_and_progress(tmp_path: Path, embedder: Embedder) -> None:
    files = [
        ("file", ("harbour.pdf", pdf_bytes(PDF_PAGES), "application/pdf")),
        ("file", ("notes.md", b"# Notes\n\nThe ferry leaves at seven.\n", "text/markdown")),
        ("file", ("scan.pdf", pdf_bytes(["", ""]), "application/pdf")),
    ]
    with upload_client(tmp_path, embedder) as client:
        started = client.post("/documents", params={"background": "true"}, files=files, headers=AUTH)
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
        assert started.headers["location"] == f"/jobs/{job_id}"
        assert started.json()["kind"] == "upload"
        assert wait_for(lambda: client.get(f"/jobs/{job_id}").json()["state"] in ("done", "failed"))
        job = client.get(f"/jobs/{job_id}").json()
        assert (job["state"], job["total"], job["done"], job["indexed"], job["failed"]) == ("done", 3, 3, 2, 1)
        assert job["failures"] == [
            {"file": "scan.pdf", "reason": "a PDF with no text layer (scanned pages?); OCR is not enabled"}
        ]
        assert job["progress"] == 1.0 and job["eta_seconds"] is None
        assert [j["id"] for j in client.get("/jobs").json()["jobs"]] == [job_id]
        assert client.get("/jobs/unknown").status_code == 404
        assert search(client, "when does the ferry leave")["citation"]["doc_id"] == "notes"
        metrics = client.get("/metrics").text
        assert 'citeline_files_total{collection="default",kind="upload",outcome="indexed"} 2.0' in metrics
        assert 'citeline_files_total{collection="default",kind="upload",outcome="failed"} 1.0' in metrics


def test_a_watched_folder_is_kept_in_sync_while_serving(tmp_path: Path, embedder: Embedder) -> None:
    folder = tmp_path / "watched"
    folder.mkdir()
    (folder / "garden.md").write_text("# Garden\n\n## Soil\n\nTomatoes want loose soil rich in compost.\n")
    with upload_client(tmp_path, embedder, watch=str(folder)) as client:

        def ids() -> set[str]:
            return {d["doc_id"] for d in client.get("/documents").json()["documents"]}

        assert wait_for(lambda: ids() == {"garden"})  # the sync at start
        (folder / "harbour.pdf").write_bytes(pdf_bytes(PDF_PAGES))
        assert wait_for(lambda: ids() == {"garden", "harbour"})
        assert search(client, "storm warning harbour")["citation"]["page"] is not None
        (folder / "garden.md").unlink()
        assert wait_for(lambda: ids() == {"harbour"})
        (folder / "harbour.pdf").write_bytes(b"%PDF-1.7 now broken")  # kept as it was, the reason reported
        assert wait_for(lambda: any(j["failed"] for j in client.get("/jobs").json()["jobs"]))
        assert ids() == {"harbour"}
        syncs = client.get("/jobs").json()["jobs"]
        assert {j["kind"] for j in syncs} == {"sync"}
        assert any(f["file"] == "watched/harbour.pdf" for j in syncs for f in j["failures"])


def test_the_command_line_indexes_files_skips_bad_ones_and_shows_pages(
    tmp_path: Path, embedder: Embedder, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.cli import main

    folder, index = tmp_path / "docs", tmp_path / "index"
    write_folder(folder)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 cut short")
    assert main(["index", str(folder), "--index", str(index), "--quiet"]) == 0
    assert main(["search", "when did the storm warning reach the harbour", "--index", str(index), "-k", "1"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("1. [harbour ") and " p. " in first
    ids = {d.doc_id for d in Engine.load(Settings(index=index), embedder=embedder).view.live_documents()}
    assert ids == {"harbour", "orchard", "bees", "garden"}
