"""Copies of a built index for tests that change one."""

from __future__ import annotations

import shutil
from pathlib import Path

from indexer.model.encoders import ENCODER_CACHE_DIR


def copy_index(index: Path, target: Path) -> Path:
    """`index` copied to `target`, without its ONNX exports: tests read those from the shared encoder cache
    (tests/conftest.py), and a copy of them in every index would fill the disk of a CI run."""
    return Path(shutil.copytree(index, target, ignore=shutil.ignore_patterns(ENCODER_CACHE_DIR)))
