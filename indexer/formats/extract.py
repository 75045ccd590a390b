"""One entry point for every format: sniff the type from the bytes, extract with that format's reader."""

from __future__ import annotations

from pathlib import PurePath

from indexer.formats.docx import DOCX, extract_docx, is_docx
from indexer.formats.extracted import Extracted, ExtractionError, Limits, check_chars, check_size
from indexer.formats.html import HTML, extract_html, looks_like_html
from indexer.formats.pdf import PDF, extract_pdf, is_pdf
from indexer.formats.plain import MARKDOWN, TEXT, decode, extract_text

# The files a folder source reads (by name); what each holds is decided by its content.
SUFFIXES = (".txt", ".md", ".markdown", ".pdf", ".html", ".htm", ".xhtml", ".docx")
MARKDOWN_SUFFIXES = (".md", ".markdown")
MEDIA_TYPES = (TEXT, MARKDOWN, HTML, PDF, DOCX)
# Extensions of binary formats: such a file whose content reads as text is broken, not a text file.
_CLAIMED = {".pdf": "PDF", ".docx": "DOCX"}
# Magic numbers of formats that are not read, to say so instead of calling them binary.
_UNSUPPORTED = {
    b"\xd0\xcf\x11\xe0": "a legacy Office file (.doc, .xls, .ppt): save it as .docx or PDF",
    b"{\\rtf": "an RTF file: save it as .docx or PDF",
    b"\x89PNG": "a PNG image: OCR is not enabled",
    b"\xff\xd8\xff": "a JPEG image: OCR is not enabled",
    b"GIF8": "a GIF image",
    b"\x1f\x8b": "a gzip archive: unpack it first",
}


def sniff(data: bytes, name: str = "") -> str:
    """The media type of `data`, from its content: PDF, DOCX, HTML, else text (Markdown when `name` ends
    in .md). Raises `ExtractionError` for content of another kind."""
    if is_pdf(data):
        return PDF
    if data.startswith(b"PK\x03\x04"):
        if is_docx(data):
            return DOCX
        raise ExtractionError("a ZIP archive that is not a Word document (.docx)")
    for magic, reason in _UNSUPPORTED.items():
        if data.startswith(magic):
            raise ExtractionError(reason)
    if looks_like_html(_head(data)):
        return HTML
    return MARKDOWN if PurePath(name).suffix.lower() in MARKDOWN_SUFFIXES else TEXT


def _head(data: bytes) -> str:
    """The start of `data` as text, loosely (a cut character or a wrong guess does not matter for sniffing)."""
    head = data[:4096]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head[: len(head) // 2 * 2].decode("utf-16", errors="ignore")
    return head.decode("utf-8", errors="ignore")


def extract(data: bytes, name: str = "", limits: Limits | None = None) -> Extracted:
    """The text and structure of a file's bytes. `name` (a file name) only tells Markdown from plain text.

    Raises `ExtractionError` saying why when the file yields no text: encrypted or damaged, no text layer,
    over a limit, binary, empty."""
    limits = limits or Limits()
    check_size(len(data), limits)
    if not data.strip():
        raise ExtractionError("an empty file")
    kind = sniff(data, name)
    claimed = _CLAIMED.get(PurePath(name).suffix.lower())
    if claimed is not None and kind in (TEXT, MARKDOWN):
        raise ExtractionError(
            f"named {PurePath(name).suffix.lower()}, but its content is not a {claimed} file (damaged?)"
        )
    if kind == PDF:
        extracted = extract_pdf(data, limits)
    elif kind == DOCX:
        extracted = extract_docx(data, limits)
    elif kind == HTML:
        extracted = extract_html(decode(data))
    else:
        extracted = extract_text(data, markdown=kind == MARKDOWN)
    check_chars(len(extracted.text), limits)
    if not extracted.text.strip():
        raise ExtractionError(f"no text in this {kind} file")
    return extracted
