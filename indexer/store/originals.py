"""Original files (PDF, HTML, DOCX) kept beside the record file, by content: `originals/ab/abcdef...`.

A document's layout names its original by SHA-256; the file is written (whole, fsynced, renamed into place)
before the document's record commits, so a stored document's original is always there. Files no document
names any more are removed when the write that let go of them commits, or by `prune` (maintenance).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

ORIGINALS_DIR = "originals"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class OriginalChangedError(OSError):
    """A file changed between being read and being kept: its bytes no longer have the hash its text came from."""


class Originals:
    """The original files of one store."""

    def __init__(self, index_dir: Path) -> None:
        self.root = index_dir / ORIGINALS_DIR

    def path(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):  # never a path from outside
            raise ValueError(f"not a SHA-256: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put(self, sha256: str, original: bytes | Path) -> None:
        """Keep `original` (its bytes, or a file to copy) under `sha256`, durably; a no-op if it is kept."""
        target = self.path(sha256)
        if target.is_file():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        handle, temporary = tempfile.mkstemp(prefix=".", dir=target.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                if isinstance(original, bytes):
                    digest.update(original)
                    out.write(original)
                else:
                    with original.open("rb") as source:
                        while chunk := source.read(_CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != sha256:
                what = original if isinstance(original, Path) else "an upload"
                raise OriginalChangedError(f"{what} changed while it was indexed")
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def remove(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def prune(self, keep: Iterable[str]) -> int:
        """Remove the kept files that `keep` does not name (and leftovers of interrupted writes)."""
        wanted = set(keep)
        removed = 0
        if not self.root.is_dir():
            return 0
        for path in self.root.glob("*/*"):
            if path.is_file() and path.name not in wanted:
                path.unlink()
                removed += 1
        return removed
