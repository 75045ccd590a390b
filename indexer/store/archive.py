"""A store as one portable archive (`citeline export` / `import`): a consistent copy of its files (the record
file with the documents, passages and vectors, the BM25 index, the vector segments, the original files) in
a tar, with a manifest of each file's size and SHA-256 and of the model that embedded it.

An archive is read into a new folder and checked whole before anyone uses it: only plain files under
`store/`, each exactly as the manifest says, none missing or extra, then the store verified as
`citeline index --verify` does. Anything else is an `ArchiveError` and the folder is removed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from indexer.store.errors import StoreError
from indexer.store.maintenance import backup, verify_index
from indexer.store.store import Store

FORMAT = "citeline-export"
VERSION = 1
MANIFEST = "manifest.json"
STORE = "store"
CHUNK = 1 << 20


class ArchiveError(StoreError):
    """An archive that is damaged, truncated, foreign or unsafe: nothing was imported."""


@dataclass(frozen=True)
class ArchiveManifest:
    """What an archive holds, written last into it."""

    model: dict[str, Any]  # the ModelInfo of the vectors: name, path, dimension, max_seq_length, fingerprint
    documents: int
    passages: int
    files: dict[str, dict[str, Any]]  # path under store/ -> {"bytes", "sha256"}
    meta: dict[str, Any] = field(default_factory=dict)  # the caller's: a collection's name and visibility
    created: float = field(default_factory=time.time)
    format: str = FORMAT
    version: int = VERSION


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            sha.update(block)
    return sha.hexdigest()


def write_archive(index_dir: Path, destination: Path, meta: dict[str, Any] | None = None) -> ArchiveManifest:
    """Write `index_dir` (it may be serving: the copy is `backup`'s, consistent as of one write) as a tar at
    `destination`, which must not exist. Needs free disk for one copy of the store beside the archive."""
    if destination.exists():
        raise StoreError(f"{destination} exists: an export goes to a new file")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    partial = destination.with_name(f".{destination.name}.partial")
    try:
        report = backup(index_dir, staging / STORE)
        store = Store.open(staging / STORE)
        try:
            model = asdict(store.settings.model)
        finally:
            store.close()
        root = staging / STORE
        files = {
            str(path.relative_to(root).as_posix()): {"bytes": path.stat().st_size, "sha256": _digest(path)}
            for path in sorted(root.rglob("*"))
            if path.is_file()
        }
        manifest = ArchiveManifest(model, report.documents, report.passages, files, dict(meta or {}))
        (staging / MANIFEST).write_text(json.dumps(asdict(manifest), indent=1), encoding="utf-8")
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in files:
                tar.add(root / name, arcname=f"{STORE}/{name}", recursive=False)
            tar.add(staging / MANIFEST, arcname=MANIFEST, recursive=False)
        partial.replace(destination)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        partial.unlink(missing_ok=True)


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or any(part in ("", ".", "..") for part in path.parts):
        raise ArchiveError(f"the archive holds an unsafe path {name!r}: refused")
    if path.parts[0] != STORE and str(path) != MANIFEST:
        raise ArchiveError(f"the archive holds {name!r}, which is not part of a Citeline export")
    return path


def read_archive(archive: Path, destination: Path, max_bytes: int = 0) -> ArchiveManifest:
    """Unpack `archive` into `destination` (which must not exist) and check it whole; the store is then at
    `destination / "store"`. On any problem an `ArchiveError` says what, and `destination` is removed.
    `max_bytes` (0: no limit) bounds what is unpacked."""
    if destination.exists():
        raise StoreError(f"{destination} exists: an import goes to a new folder")
    try:
        return _read(archive, destination, max_bytes)
    except BaseException:
        shutil.rmtree(destination, ignore_errors=True)
        raise


def _read(archive: Path, destination: Path, max_bytes: int) -> ArchiveManifest:
    destination.mkdir(parents=True)
    found: dict[str, dict[str, Any]] = {}
    raw_manifest: bytes | None = None
    unpacked = 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                path = _safe_name(member.name)
                if member.isdir():
                    continue
                if not member.isfile():
                    raise ArchiveError(f"the archive holds {member.name!r}, which is not a plain file: refused")
                unpacked += member.size
                if max_bytes and unpacked > max_bytes:
                    limit = f"{max_bytes} bytes (CITELINE_MAX_IMPORT_BYTES)"
                    raise ArchiveError(f"the archive unpacks to more than {limit}")
                source = tar.extractfile(member)
                assert source is not None  # a regular file
                if str(path) == MANIFEST:
                    raw_manifest = source.read(CHUNK * 16)
                    continue
                name = str(PurePosixPath(*path.parts[1:]))
                if name in found:
                    raise ArchiveError(f"the archive holds {member.name!r} twice: refused")
                target = destination / STORE / name
                target.parent.mkdir(parents=True, exist_ok=True)
                sha, size = hashlib.sha256(), 0
                with target.open("wb") as handle:
                    while block := source.read(CHUNK):
                        sha.update(block)
                        size += len(block)
                        handle.write(block)
                found[name] = {"bytes": size, "sha256": sha.hexdigest()}
    except (tarfile.TarError, EOFError, OSError) as error:
        if isinstance(error, OSError) and not isinstance(error, EOFError) and error.errno is not None:
            raise  # the disk, not the archive
        raise ArchiveError(f"not a readable archive (truncated or damaged): {error}") from error
    if raw_manifest is None:
        raise ArchiveError("the archive has no manifest.json: not a Citeline export, or cut short")
    manifest = _parse_manifest(raw_manifest)
    if found != manifest.files:
        missing = sorted(set(manifest.files) - set(found))
        extra = sorted(set(found) - set(manifest.files))
        changed = sorted(n for n in set(found) & set(manifest.files) if found[n] != manifest.files[n])
        raise ArchiveError(
            "the archive's files differ from its manifest (damaged or edited): "
            f"missing {missing[:3]}, unlisted {extra[:3]}, changed {changed[:3]}"
        )
    try:
        verify_index(destination / STORE)
    except StoreError as error:
        raise ArchiveError(f"the archive's index does not verify: {error}") from error
    return manifest


def _parse_manifest(raw: bytes) -> ArchiveManifest:
    try:
        data = json.loads(raw)
        if data.get("format") != FORMAT:
            raise ArchiveError(f"manifest.json is not a {FORMAT} manifest: not a Citeline export")
        if data.get("version") != VERSION:
            raise ArchiveError(
                f"the archive is {FORMAT} version {data.get('version')}; this Citeline reads version {VERSION}"
            )
        return ArchiveManifest(**data)
    except (ValueError, TypeError, AttributeError) as error:
        raise ArchiveError(f"manifest.json cannot be read: {error}") from error
