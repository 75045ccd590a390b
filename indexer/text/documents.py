"""Load sources (folders of PDF, HTML, DOCX, Markdown and text files; JSONL corpora) into `Document`s.

A document's `text` is what citations refer to: the file's own text, or the text extracted from it (PDF,
HTML, DOCX), with its `Layout` (pages, sections, the original file's type and hash) beside it.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Any

from indexer.errors import CitelineError
from indexer.formats.extract import SUFFIXES, extract
from indexer.formats.extracted import ExtractionError, Limits
from indexer.formats.plain import TEXT
from indexer.progress import Progress

logger = logging.getLogger(__name__)
# Printable, no whitespace, no path separators, not starting with '.': never a path trick, fine in a URL.
DOC_ID_PATTERN = re.compile(r"[^\s/\\.\x00-\x1f\x7f\ufeff][^\s/\\\x00-\x1f\x7f\ufeff]{0,199}")


class SourceError(CitelineError, ValueError):
    """A source could not be read as documents (missing path, bad JSONL line, duplicate id)."""


@dataclass(frozen=True)
class Layout:
    """Where a document's text came from: the original file's media type and SHA-256 (its bytes are kept
    in the store, `GET /documents/{id}/source`), where each page starts (PDF), and the heading path that
    holds from each offset on (every format with headings)."""

    media_type: str
    original: str = ""  # SHA-256 of the original file, "" when the text is the original
    pages: tuple[int, ...] = ()  # pages[i]: offset in `text` where page i + 1 starts
    sections: tuple[tuple[int, str], ...] = ()  # (offset, heading path), offsets increasing

    def page_range(self, start: int, end: int) -> tuple[int, int] | None:
        """The 1-based pages on which `text[start:end]` starts and ends; None without pages."""
        if not self.pages:
            return None
        first = max(1, bisect.bisect_right(self.pages, start))
        return first, max(first, bisect.bisect_right(self.pages, max(start, end - 1)))

    def section_at(self, offset: int) -> str | None:
        """The heading path in effect at `offset`, None before the first heading or without any."""
        at = bisect.bisect_right(self.sections, (offset, "\U0010ffff")) - 1
        return self.sections[at][1] if at >= 0 else None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | None) -> Layout | None:
        if not raw:
            return None
        values = json.loads(raw)
        return cls(
            media_type=values["media_type"],
            original=values.get("original", ""),
            pages=tuple(values.get("pages", ())),
            sections=tuple((int(o), str(p)) for o, p in values.get("sections", ())),
        )


@dataclass(frozen=True)
class Document:
    """One document exactly as read: every citation offset refers to `text`."""

    doc_id: str
    text: str
    title: str | None = None
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    layout: Layout | None = None
    # The original file (its bytes, or where to read them) until the store keeps it; never compared.
    original: bytes | Path | None = field(default=None, compare=False, repr=False)

    @property
    def content_hash(self) -> str:
        """Hash of what indexing depends on: a document with the same hash needs no re-embedding."""
        values: list[Any] = [self.title, self.text]
        if self.layout is not None:  # documents without one hash as before layouts existed
            values.append(self.layout.to_json())
        payload = json.dumps(values, ensure_ascii=False)
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


def document_from_file(
    data: bytes,
    doc_id: str,
    source: str,
    name: str = "",
    limits: Limits | None = None,
    original: bytes | Path | None = None,
) -> Document:
    """A file's bytes as a document (`ExtractionError` if they yield none). Plain UTF-8 or otherwise decoded
    text is its own original; other formats keep theirs (`original`, default `data`) beside the text."""
    extracted = extract(data, name, limits)
    title = extracted.title or detect_title(extracted.text)
    if extracted.media_type == TEXT:
        return Document(doc_id=doc_id, text=extracted.text, title=title, source=source)
    keeps_original = extracted.media_type != "text/markdown"
    layout = Layout(
        media_type=extracted.media_type,
        original=hashlib.sha256(data).hexdigest() if keeps_original else "",
        pages=extracted.pages,
        sections=extracted.sections,
    )
    return Document(
        doc_id=doc_id,
        text=extracted.text,
        title=title,
        source=source,
        layout=layout,
        original=(original if original is not None else data) if keeps_original else None,
    )


def file_doc_id(path: PurePath) -> str:
    """A file's document id: its name without the extension, whitespace runs as "_" ("Annual Report.pdf" is
    `Annual_Report`)."""
    return re.sub(r"[\s\x00-\x1f\x7f\ufeff]+", "_", path.stem).strip("_") or path.stem


def load_file(
    path: Path, root: Path | None = None, limits: Limits | None = None, stored: Mapping[str, Document] | None = None
) -> Document:
    """A file as a document: its id is `file_doc_id`, its type sniffed from the content. `stored` (source ->
    document as stored) saves the extraction of a file whose bytes are those of the stored document's original:
    that document is returned as it is."""
    source = str(path.relative_to(root)) if root is not None else str(path)
    limits = limits or Limits()
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ExtractionError(
                f"the file has {size:,} bytes; the limit is {limits.max_bytes:,} (CITELINE_MAX_FILE_BYTES)"
            )
        data = path.read_bytes()
    except OSError as error:
        raise SourceError(f"{source}: cannot be read ({error.strerror or error})") from None
    known = (stored or {}).get(source)
    if (
        known is not None
        and known.layout is not None
        and known.layout.original
        and known.doc_id == file_doc_id(path)
        and hashlib.sha256(data).hexdigest() == known.layout.original
    ):
        return known
    try:
        return document_from_file(data, file_doc_id(path), source, path.name, limits, original=path)
    except ExtractionError as error:
        raise SourceError(f"{source}: {error}") from None


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


@dataclass(frozen=True)
class Failure:
    """A file that yielded no document, and why. Its stored version, if any, is kept (`doc_id`)."""

    source: str
    reason: str
    doc_id: str | None = None


@dataclass
class Loaded:
    """What a set of sources yields: documents with unique ids, and the files that failed."""

    documents: list[Document] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def source_files(folder: Path) -> list[Path]:
    """The files a folder source reads, recursively and in order: those with a supported extension,
    hidden files and folders aside."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def read_sources(
    sources: Iterable[str | Path],
    limits: Limits | None = None,
    stored: Mapping[str, Document] | None = None,
    show_progress: bool = False,
) -> Loaded:
    """Every document of the given folders (recursive) and files. A file that cannot be read or extracted,
    or whose id another file has already taken, is a `Failure` and the rest are read: one bad file never
    stops a batch. A source that does not exist, or a malformed JSONL file, raises `SourceError`. With
    `stored` (see `load_file`), files unchanged since they were stored are not extracted again. With
    `show_progress`, files read so far are shown (a bar on a terminal, else a log line now and then):
    extracting a folder of PDFs can take minutes before anything is embedded."""
    # The whole plan first, so progress has a total; a missing source fails before anything is read.
    plan: list[tuple[Path, Path | None]] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            plan.extend((file, path.parent) for file in source_files(path))
        elif path.is_file():
            plan.append((path, None if path.suffix.lower() == ".jsonl" else path.parent))
        else:
            raise SourceError(f"{path}: not a folder, a .jsonl file or a file to read ({', '.join(SUFFIXES)})")
    loaded = Loaded()
    seen: dict[str, str] = {}
    progress = Progress(sum(root is not None for _, root in plan), "reading", "files", enabled=show_progress)
    try:
        for path, root in plan:
            if root is None:
                for document in iter_jsonl_documents(path):
                    validate_doc_id(document.doc_id)
                    if document.doc_id in seen:
                        raise SourceError(
                            f"duplicate doc_id {document.doc_id!r} in {seen[document.doc_id]} and {document.source}"
                        )
                    seen[document.doc_id] = document.source
                    loaded.documents.append(document)
                continue
            _take(path, root, limits, stored, seen, loaded)
            progress.update(1, 0, failed=len(loaded.failures))
    finally:
        progress.close()
    for failure in loaded.failures:
        logger.warning("skipped %s: %s", failure.source, failure.reason.removeprefix(f"{failure.source}: "))
    return loaded


def _take(
    path: Path,
    root: Path,
    limits: Limits | None,
    stored: Mapping[str, Document] | None,
    seen: dict[str, str],
    loaded: Loaded,
) -> None:
    """Read one file into `loaded`: its document, or its failure."""
    try:
        document = load_file(path, root, limits, stored)
        validate_doc_id(document.doc_id)
    except SourceError as error:
        loaded.failures.append(Failure(str(path.relative_to(root)), str(error), file_doc_id(path)))
        return
    if document.doc_id in seen:
        reason = f"duplicate doc_id {document.doc_id!r} in {seen[document.doc_id]} and {document.source}"
        loaded.failures.append(Failure(document.source, reason))
        return
    seen[document.doc_id] = document.source
    loaded.documents.append(document)


def load_documents(sources: Iterable[str | Path], limits: Limits | None = None) -> list[Document]:
    """Every document of the given sources; raises `SourceError` for the first file that fails (for corpora
    that must load whole: evaluation sets, benchmarks)."""
    loaded = read_sources(sources, limits)
    if loaded.failures:
        raise SourceError(loaded.failures[0].reason)
    return loaded.documents
