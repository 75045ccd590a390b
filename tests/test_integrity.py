"""Integrity of the on-disk index: every file checksummed in the manifest, verified on load and by `--verify`."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.snapshot import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    SnapshotIntegrityError,
    current_snapshot_path,
    file_digest,
    load_snapshot,
    read_manifest,
    verify_index,
)
from service.cli import main
from service.engine import index_sources
from service.settings import Settings
from tests.server import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def index_copy(seed_index: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(seed_index, tmp_path / "index"))


def live(index: Path) -> Path:
    return current_snapshot_path(index)


def edit_manifest(index: Path, change: dict) -> None:
    path = live(index) / MANIFEST_FILE
    raw = json.loads(path.read_text())
    raw.update(change)
    path.write_text(json.dumps(raw))


def test_manifest_lists_every_file_with_its_size_and_sha256(seed_index: Path):
    manifest = read_manifest(seed_index)
    folder = live(seed_index)
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {MANIFEST_FILE}
    assert manifest.format_version == FORMAT_VERSION == 2
    assert set(manifest.files) == on_disk and "bm25/vocab.index.json" in on_disk
    for name, digest in manifest.files.items():
        assert file_digest(folder / name) == digest
    report = verify_index(seed_index)
    assert report.files == len(on_disk) and report.bytes == sum(d.size for d in manifest.files.values())


def test_truncated_file_fails_naming_it(index_copy: Path):
    target = live(index_copy) / "dense.faiss"
    size = target.stat().st_size
    with target.open("r+b") as handle:
        handle.truncate(size - 100)
    with pytest.raises(SnapshotIntegrityError) as caught:
        load_snapshot(index_copy)
    message = str(caught.value)
    assert str(target) in message and "truncated" in message and str(size) in message
    assert "\n" not in message


def test_altered_byte_fails_its_checksum(index_copy: Path):
    target = live(index_copy) / "documents.jsonl"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, one bit flipped
    target.write_bytes(bytes(data))
    with pytest.raises(SnapshotIntegrityError, match=r"documents\.jsonl: does not match its checksum"):
        load_snapshot(index_copy)


@pytest.mark.parametrize("name", ["sentences.faiss", "bm25/vocab.index.json", "chunks.npz"])
def test_missing_file_fails_naming_it(index_copy: Path, name: str):
    (live(index_copy) / name).unlink()
    with pytest.raises(SnapshotIntegrityError, match=rf"{name}: is missing"):
        load_snapshot(index_copy)


def test_newer_format_is_refused_naming_the_manifest(index_copy: Path):
    edit_manifest(index_copy, {"format_version": FORMAT_VERSION + 1})
    with pytest.raises(SnapshotIntegrityError) as caught:
        load_snapshot(index_copy)
    assert f"{MANIFEST_FILE}: index format version {FORMAT_VERSION + 1} is newer" in str(caught.value)
    assert "upgrade citeline" in str(caught.value)


def test_damaged_manifest_is_a_clear_error(index_copy: Path):
    path = live(index_copy) / MANIFEST_FILE
    path.write_text(path.read_text()[:200])
    with pytest.raises(SnapshotIntegrityError, match=r"manifest\.json: is not valid JSON"):
        load_snapshot(index_copy)
    path.write_text("{}")  # an object without a format version
    with pytest.raises(SnapshotIntegrityError, match="format version None is not supported"):
        load_snapshot(index_copy)


def test_format_2_manifest_without_checksums_is_damaged(index_copy: Path):
    edit_manifest(index_copy, {"files": {}})
    with pytest.raises(SnapshotIntegrityError, match="lists no file checksums"):
        load_snapshot(index_copy)


def test_format_1_snapshot_loads_unverified_with_a_warning(index_copy: Path, caplog: pytest.LogCaptureFixture):
    path = live(index_copy) / MANIFEST_FILE
    raw = json.loads(path.read_text())
    del raw["files"]
    raw["format_version"] = 1
    path.write_text(json.dumps(raw))
    with caplog.at_level(logging.WARNING, logger="indexer.snapshot"):
        snapshot = load_snapshot(index_copy)
    assert snapshot.num_chunks > 0 and "carry no checksums" in caplog.text
    assert "no checksums recorded" in verify_index(index_copy).summary()
    # Unverified damage still fails with the file's name, not a library traceback.
    (live(index_copy) / "dense.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(SnapshotIntegrityError, match=r"dense\.faiss: cannot be parsed"):
        load_snapshot(index_copy)


def test_cli_verify_reports_ok_then_the_damage(index_copy: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["index", "--verify", str(index_copy)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: ") and "5 documents" in out and "match their SHA-256" in out
    with (live(index_copy) / "sentences.npz").open("r+b") as handle:
        handle.truncate(10)
    assert main(["index", "--verify", str(index_copy)]) == 1
    err = capsys.readouterr().err.strip()
    assert "sentences.npz: is truncated" in err and len(err.splitlines()) == 1
    assert main(["index", "--verify", str(index_copy.parent / "nothing")]) == 1
    assert "no index at" in capsys.readouterr().err


def test_serve_refuses_a_damaged_index_with_one_line(index_copy: Path):
    target = live(index_copy) / "chunks.npz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--index", str(index_copy), "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "chunks.npz" in line]
    assert len(errors) == 1 and "does not match its checksum" in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_reindexing_a_damaged_index_refuses_instead_of_rebuilding(index_copy: Path, embedder):
    (live(index_copy) / "dense.faiss").unlink()
    with pytest.raises(SnapshotIntegrityError, match="is missing"):
        index_sources(Settings(index=index_copy, sources=str(ROOT / "seeds")), embedder, show_progress=False)
