"""Export and import: a collection moved to another server answers exactly as before, with nothing parsed or
embedded again; a damaged, truncated, edited or foreign archive is refused and nothing is half-imported."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from indexer.model.embedding import Embedder
from indexer.store.archive import MANIFEST
from service.api.app import create_app
from service.engine import Engine
from service.settings import Settings
from tests.copies import copy_index
from tests.formats import pdf_bytes

ADMIN = "admin-key"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
TAR = {"content-type": "application/x-tar"}
QUESTIONS = ["how many US troops were sent", "when does the harbour ferry leave", "who reached the dam"]


def server(root: Path, seed_index: Path, embedder: Embedder) -> TestClient:
    index = root / "index"
    if not index.exists():
        copy_index(seed_index, index)
    settings = Settings(index=index, admin_key=ADMIN, collections_dir=str(root / "collections"), reload_seconds=0)
    return TestClient(create_app(settings, engine=Engine.load(settings, embedder=embedder)))


@pytest.fixture
def source(tmp_path: Path, seed_index: Path, embedder: Embedder) -> Iterator[TestClient]:
    with server(tmp_path / "a", seed_index, embedder) as client:
        assert client.post("/collections", json={"name": "wire"}, headers=AUTH).status_code == 201
        for doc_id, text in [
            ("ferry", "The harbour ferry leaves at seven every morning and returns at noon."),
            ("dam", "Kurdish-led fighters reached the Tabqa dam after a week of fighting near the town."),
        ]:
            client.put(f"/collections/wire/documents/{doc_id}", json={"text": text}, headers=AUTH)
        pdf = pdf_bytes(["Page one of the log.", "Page two: the ferry was late in the storm."], title="Ferry log")
        files = [("file", ("log.pdf", pdf, "application/pdf"))]
        assert client.post("/collections/wire/documents", files=files, headers=AUTH).status_code == 201
        yield client


@pytest.fixture
def target(tmp_path: Path, seed_index: Path, embedder: Embedder) -> Iterator[TestClient]:
    with server(tmp_path / "b", seed_index, embedder) as client:
        yield client


def answers(client: TestClient, prefix: str) -> list[list[tuple[str, int, int, float]]]:
    out = []
    for q in QUESTIONS:
        results = client.get(f"{prefix}/search", params={"q": q, "k": 5}, headers=AUTH).json()["results"]
        out.append(
            [(r["citation"]["doc_id"], r["citation"]["start"], r["citation"]["end"], r["score"]) for r in results]
        )
    return out


def exported(client: TestClient, prefix: str = "/collections/wire") -> bytes:
    response = client.get(f"{prefix}/export", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-tar"
    return response.content


def test_an_exported_collection_answers_the_same_on_another_server(source: TestClient, target: TestClient) -> None:
    archive = exported(source)
    assert not [p for p in Path(source.app.state.collections.folder).iterdir() if p.name.startswith(".")]  # type: ignore[attr-defined]
    made = target.post("/collections/moved/import", content=archive, headers={**AUTH, **TAR})
    assert made.status_code == 201, made.text
    assert made.json()["reembedded"] is False and made.json()["collection"]["documents"] == 3
    assert answers(target, "/collections/moved") == answers(source, "/collections/wire"), "identical results"
    original = source.get("/collections/wire/documents/log/source", headers=AUTH).content
    assert target.get("/collections/moved/documents/log/source", headers=AUTH).content == original
    assert (
        target.get("/collections/moved/documents/log", headers=AUTH).json()
        == source.get("/collections/wire/documents/log", headers=AUTH).json()
    )
    # The default collection exports too; an import never makes or replaces `default`, nor a taken name.
    seeds = exported(source, "")
    assert target.post("/collections/moved/import", content=seeds, headers={**AUTH, **TAR}).status_code == 409
    assert target.post("/collections/default/import", content=seeds, headers={**AUTH, **TAR}).status_code == 409
    assert target.post("/collections/seeds/import", content=seeds, headers=TAR).status_code == 401
    made = target.post("/collections/seeds/import", content=seeds, headers={**AUTH, **TAR}, params={"public": "true"})
    assert made.status_code == 201 and made.json()["collection"]["public"] is True
    assert answers(target, "/collections/seeds") == answers(target, "")


def rewrite(archive: bytes, change: dict[str, bytes | None]) -> bytes:
    """The archive with members replaced (bytes) or left out (None)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(archive)) as old, tarfile.open(fileobj=out, mode="w") as new:
        for member in old:
            data = old.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
            if member.name in change:
                if change[member.name] is None:
                    continue
                data = change[member.name]  # type: ignore[assignment]
                member.size = len(data)
            new.addfile(member, io.BytesIO(data))
    return out.getvalue()


def evil_tar(name: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = 5
        tar.addfile(info, io.BytesIO(b"owned"))
    return out.getvalue()


def test_damaged_truncated_edited_and_foreign_archives_are_refused(
    source: TestClient, target: TestClient, tmp_path: Path
) -> None:
    archive = exported(source)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
    records = next(n for n in names if n.endswith("records.sqlite"))
    edited_manifest = {**manifest, "files": {**manifest["files"], "extra.bin": {"bytes": 1, "sha256": "0" * 64}}}
    bad = {
        "truncated": archive[: len(archive) // 2],
        "not a tar": b"this is not an archive at all",
        "no manifest": rewrite(archive, {MANIFEST: None}),
        "a file missing": rewrite(archive, {records: None}),
        "a file changed": rewrite(archive, {records: b"SQLite format 3\x00" + b"\x00" * 100}),
        "manifest edited": rewrite(archive, {MANIFEST: json.dumps(edited_manifest).encode()}),
        "foreign format": rewrite(archive, {MANIFEST: json.dumps({**manifest, "format": "other"}).encode()}),
        "path escape": evil_tar("../../escaped.txt"),
        "absolute path": evil_tar("/tmp/escaped.txt"),
    }
    for why, data in bad.items():
        response = target.post("/collections/broken/import", content=data, headers={**AUTH, **TAR})
        assert response.status_code == 422, (why, response.status_code, response.text)
        assert response.json()["detail"], why
    folder = Path(target.app.state.collections.folder)  # type: ignore[attr-defined]
    left = [p.name for p in folder.iterdir() if not p.name.startswith("keys.sqlite")]
    assert left == [], f"nothing half-imported, no leftovers: {left}"
    assert target.get("/collections/broken/search", params={"q": "x"}, headers=AUTH).status_code == 404
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/escaped.txt").exists()


def test_vectors_of_another_model_are_embedded_again(source: TestClient, target: TestClient) -> None:
    archive = exported(source)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        manifest = json.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
    manifest["model"]["fingerprint"] = "another-model"
    foreign = rewrite(archive, {MANIFEST: json.dumps(manifest).encode()})
    made = target.post("/collections/again/import", content=foreign, headers={**AUTH, **TAR})
    assert made.status_code == 201, made.text
    assert made.json()["reembedded"] is True and made.json()["collection"]["documents"] == 3
    ids = [[hit[:3] for hit in hits] for hits in answers(target, "/collections/again")]
    assert ids == [[hit[:3] for hit in hits] for hits in answers(source, "/collections/wire")]
    assert target.get("/collections/again/documents/log/source", headers=AUTH).content.startswith(b"%PDF")


def test_the_command_line_exports_and_imports(source: TestClient, tmp_path: Path, seed_index: Path) -> None:
    from service.cli import main

    root = tmp_path / "a"
    where = ["--index", str(root / "index"), "--collections-dir", str(root / "collections")]
    out = tmp_path / "wire.citeline.tar"
    assert main(["export", str(out), *where, "--collection", "wire"]) == 0
    assert main(["export", str(out), *where, "--collection", "wire"]) == 2, "never overwrites"
    other = ["--index", str(tmp_path / "c" / "index"), "--collections-dir", str(tmp_path / "c" / "collections")]
    assert main(["import", str(out), "copy", *other, "--public"]) == 0
    meta = json.loads((tmp_path / "c" / "collections" / "copy" / "collection.json").read_text())
    assert meta["public"] is True
    assert main(["import", str(out), "copy", *other]) == 2, "the name is taken"
    assert main(["search", "when does the harbour ferry leave", *other, "--collection", "copy", "-k", "1"]) == 0
