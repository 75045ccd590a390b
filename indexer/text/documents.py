"""Load sources (folders of .txt/.md files, JSONL corpora) into `Document`s with their original text."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.errors import CitelineError

TEXT_SUFFIXES = (".txt", ".md")
# Printable, no whitespace, no path separators, not starting with '.': never a path trick, fine in a URL.
DOC_ID_PATTERN = re.compile(r"[^\s/\\.\x00-\x1f\x7f\ufeff][^\s/\\\x00-\x1f\x7f\ufeff]{0,199}")


class SourceError(CitelineError, ValueError):
    """A source could not be read as documents (missing path, bad JSONL line, duplicate id)."""


@dataclass(frozen=True)
class Document:
    """One document exactly as read: every citation offset refers to `text`."""

    doc_id: str
    text: str
    title: str | None = None
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        """Hash of what indexing depends on: a document with the same hash needs no re-embedding."""
        payload = json.dumps([self.title, self.text], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# Lines scraped pages carry that are not the article: kept in the stored text, kept out of passages.
_BOILERPLATE_PATTERNS = [
    r"this (site|domain) is for sale\.?",
    r"subscribe( now| to our newsletter| for more)?\.?",
    r"sign up( for our newsletter)?\.?",
    r"newsfeed",
    r"loader",
    r"chats?",
    r"advertisement",
    r"share( this( article| story)?)?( on \w+)?",
    r"to participate in the discussion",
    r"log ?in or register",
    r"log ?in to comment",
    r"comments?( \(\d+\))?",
    r"(leave|post|add) a comment",
    r"read more",
    r"all rights reserved\.?",
    r"this article was possible thanks to your donations\..*",
    r"please (keep )?support(ing)? us.*",
    r"заголовок открываемого материала",
    r"[\W\d_]*",  # only digits, punctuation or symbols: counters, separators
]
_BOILERPLATE = re.compile("|".join(f"(?:{p})" for p in _BOILERPLATE_PATTERNS), re.IGNORECASE)
_DATE_LINE = re.compile(
    r"^(?:(?:mon|tues|wednes|thurs|fri|satur|sun)day,?\s+)?"
    r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4}$",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?…:;,][\"'”’)\]]*$")


def is_boilerplate_line(line: str) -> bool:
    """True for a line of site furniture (paywall, comment widget, counters), not article content."""
    return _BOILERPLATE.fullmatch(" ".join(line.split())) is not None


def is_dateline(line: str) -> bool:
    """True for a line that is only a date ("Tuesday, February 7th, 2023"): page metadata, not content."""
    return _DATE_LINE.match(" ".join(line.split())) is not None


def _short_and_unpunctuated(words: list[str]) -> bool:
    """A line of at most 20 words and 150 characters that does not end like a sentence."""
    return bool(words) and len(words) <= 20 and len(" ".join(words)) <= 150 and not _SENTENCE_END.search(words[-1])


def _mostly_capitalised(words: list[str]) -> bool:
    return sum(w[:1].isupper() or not w[:1].isalpha() for w in words) >= 0.6 * len(words)


def reads_as_headline(line: str) -> bool:
    """True for a line that reads as a headline: short, no sentence-ending punctuation, mostly capitalised words.

    Scraped articles carry such lines besides their own headline: related-story links ("Perfect Timing:
    Why Syrian Army Joined 'Race' to Liberate Raqqa"), photo credits ("File photo - Sputnik International").
    """
    words = line.split()
    return _short_and_unpunctuated(words) and _mostly_capitalised(words)


def detect_title(text: str) -> str | None:
    """The headline of a scraped article: its first content line if it reads as one, else None.

    Leading boilerplate and date lines are passed over. A headline is short, has no sentence-ending
    punctuation and is followed by a blank line or is mostly capitalised words.
    """
    lines = text.splitlines()
    for index, raw in enumerate(lines[:8]):
        line = " ".join(raw.split())
        if not line or is_boilerplate_line(line) or is_dateline(line):
            continue
        words = line.split()
        if not _short_and_unpunctuated(words):
            return None
        followed_by_blank = index + 1 >= len(lines) or not lines[index + 1].strip()
        return line if followed_by_blank or _mostly_capitalised(words) else None
    return None


def validate_doc_id(doc_id: str) -> str:
    """Return `doc_id` if it is safe to use as an identifier (and never a path), else raise."""
    if not DOC_ID_PATTERN.fullmatch(doc_id) or ".." in doc_id:
        raise SourceError(
            f"doc_id {doc_id!r} is not allowed: use 1-200 printable characters without whitespace, "
            "'/' or '\\', not starting with '.' and without '..'"
        )
    return doc_id


def load_text_file(path: Path, root: Path | None = None) -> Document:
    """A `.txt`/`.md` file as a document: id is the file stem, title detected from the first line."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SourceError(f"{path}: not valid UTF-8 ({error})") from error
    text = text.removeprefix("\ufeff")
    source = str(path.relative_to(root)) if root is not None else str(path)
    return Document(doc_id=path.stem, text=text, title=detect_title(text), source=source)


def iter_jsonl_documents(path: Path) -> Iterator[Document]:
    """Documents of a JSONL corpus (BEIR `corpus.jsonl` as is): `_id` or `id`, `text`, optional `title`."""
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise SourceError(f"{where}: invalid JSON ({error.msg})") from error
            if not isinstance(record, dict):
                raise SourceError(f"{where}: each line must be a JSON object")
            doc_id = record.pop("_id", None) or record.pop("id", None)
            text = record.pop("text", None)
            if not isinstance(doc_id, (str, int)) or not isinstance(text, str):
                raise SourceError(f"{where}: needs an '_id' or 'id' and a string 'text'")
            title = record.pop("title", None)
            yield Document(
                doc_id=str(doc_id),
                text=text,
                title=title.strip() or None if isinstance(title, str) else None,
                source=f"{path.name}#{doc_id}",
                metadata=record,
            )


def load_documents(sources: Iterable[str | Path]) -> list[Document]:
    """Every document of the given folders (recursive, .txt/.md) and JSONL files, ids unique."""
    documents: list[Document] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
            documents.extend(load_text_file(p, root=path.parent) for p in files)
        elif path.is_file() and path.suffix.lower() == ".jsonl":
            documents.extend(iter_jsonl_documents(path))
        elif path.is_file() and path.suffix.lower() in TEXT_SUFFIXES:
            documents.append(load_text_file(path, root=path.parent))
        else:
            raise SourceError(f"{path}: not a folder, a .jsonl file or a .txt/.md file")
    seen: dict[str, str] = {}
    for document in documents:
        validate_doc_id(document.doc_id)
        if document.doc_id in seen:
            raise SourceError(f"duplicate doc_id {document.doc_id!r} in {seen[document.doc_id]} and {document.source}")
        seen[document.doc_id] = document.source
    return documents
