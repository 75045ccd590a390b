"""Real English text for the scale benchmark, from Debian's packages (`make bench-scale` installs them).

The Linux kernel's documentation (package linux-doc-6.1): some 3,000 reStructuredText files of prose,
code and tables, each one document, as its HTML build ships their sources.

GCIDE, the Collaborative International Dictionary of English (package dict-gcide): about 200k entries of
definitions, quotations and etymologies, each one document. The dictd files are an index of
`headword<TAB>offset<TAB>length` (numbers in dictd's base-64) and the entries' text, gzip-compressed.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

from indexer.text.documents import Document

GCIDE = Path("/usr/share/dictd")
_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_VALUE = {c: i for i, c in enumerate(_DIGITS)}
PACKAGES = ("dict-gcide", "linux-doc-6.1")
LINUX_DOCS = Path("/usr/share/doc/linux-doc-6.1/html/_sources")


def dictd_number(text: str) -> int:
    """A number written in dictd's base-64 digits."""
    value = 0
    for character in text:
        value = value * 64 + _VALUE[character]
    return value


def gcide_documents(folder: Path = GCIDE) -> Iterator[Document]:
    """Every GCIDE entry once (headwords that share an entry give it once), in the order of the file.

    `FileNotFoundError` names the package to install when it is missing."""
    index, data = folder / "gcide.index", folder / "gcide.dict.dz"
    if not index.is_file() or not data.is_file():
        raise FileNotFoundError(f"{index} or {data} is missing: install Debian's {' '.join(PACKAGES)}")
    entries: dict[tuple[int, int], str] = {}
    for line in index.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or parts[0].startswith("00-"):  # the 00- entries describe the database
            continue
        entries.setdefault((dictd_number(parts[1]), dictd_number(parts[2])), parts[0])
    with gzip.open(data, "rb") as handle:
        raw = handle.read()
    for (offset, length), headword in sorted(entries.items()):
        text = raw[offset : offset + length].decode("utf-8", errors="replace").strip()
        if text:
            yield Document(doc_id=f"gcide-{offset}", text=text, title=headword, source="gcide")


def linux_documents(folder: Path = LINUX_DOCS) -> Iterator[Document]:
    """Every documentation file of the kernel, in path order; its title is its first line of text."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing: install Debian's linux-doc-6.1")
    for path in sorted(folder.rglob("*.rst.txt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            continue
        title = next((line.strip() for line in text.splitlines() if line.strip() and line.strip()[0].isalnum()), None)
        name = path.relative_to(folder).as_posix().removesuffix(".rst.txt")
        yield Document(doc_id=f"linux/{name}", text=text, title=title, source="linux-doc")
