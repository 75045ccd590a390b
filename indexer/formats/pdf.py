"""PDF (text layer) through PDFium (pypdfium2): page by page in PDFium's reading order, words hyphenated at a
line end joined, and the running headers and footers that repeat on most pages dropped.

PDFium is not thread-safe: one extraction at a time in a process (a lock), as pypdfium2 asks.
"""

from __future__ import annotations

import re
import threading
from collections import Counter

from indexer.formats.extracted import Extracted, ExtractionError, Limits, check_chars

PDF = "application/pdf"
_LOCK = threading.Lock()
# A word cut at a line end: "exam-\nple" (PDFium may also mark a soft hyphen with \x02 or U+FFFE).
_HYPHENATED = re.compile(r"(\w)(?:-|\u00ad|\x02|\ufffe)\n(?=[a-z])")
_SOFT_HYPHEN = re.compile(r"[\x02\ufffe]")
_PAGE_NUMBER = re.compile(
    r"(?:page\s*)?\d{1,5}(?:\s*(?:of|/)\s*\d{1,5})?"  # 7, Page 7, 7 of 9, 7/9
    r"|(?=[ivxlc])c{0,3}(?:xc|xl|l?x{0,3})(?:ix|iv|v?i{0,3})",  # roman: vii, xiv
    re.IGNORECASE,
)
# Lines at each end of a page that may be running headers or footers.
_EDGE_LINES = 2


def is_pdf(data: bytes) -> bool:
    """PDF's header within the first 1,024 bytes (readers allow junk before it), not after words of text."""
    at = data.find(b"%PDF-", 0, 1024)
    return at == 0 or (at > 0 and re.search(rb"[A-Za-z]{3}", data[:at]) is None)


def _page_texts(data: bytes, limits: Limits) -> tuple[list[str], str | None]:
    import pypdfium2 as pdfium

    with _LOCK:
        try:
            document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as error:
            if "password" in str(error).lower():
                raise ExtractionError("an encrypted PDF: it needs a password to be read") from None
            raise ExtractionError(f"a damaged PDF that cannot be opened ({error})") from None
        try:
            count = len(document)
            if count > limits.max_pages:
                raise ExtractionError(
                    f"a PDF of {count:,} pages; the limit is {limits.max_pages:,} (CITELINE_MAX_PDF_PAGES)"
                )
            title = (document.get_metadata_dict(skip_empty=True).get("Title") or "").strip() or None
            pages, chars = [], 0
            for number in range(count):
                page = document[number]
                try:
                    textpage = page.get_textpage()
                    try:
                        text = textpage.get_text_bounded()
                    finally:
                        textpage.close()
                finally:
                    page.close()
                chars += len(text)
                check_chars(chars, limits)
                pages.append(text)
            return pages, title
        except pdfium.PdfiumError as error:
            raise ExtractionError(f"a damaged PDF ({error})") from None
        finally:
            document.close()


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = _HYPHENATED.sub(r"\1", text)
    return _SOFT_HYPHEN.sub("", text)


def _shape(line: str) -> str:
    """A line with its numbers masked: "Page 3 of 9" and "Page 4 of 9" are the same running footer."""
    return re.sub(r"\d+", "#", " ".join(line.split()).lower())


def _running_lines(pages: list[list[str]]) -> set[str]:
    """Shapes of the lines at a page's top or bottom that recur on at least half the pages (three or more)."""
    if len(pages) < 3:
        return set()
    counts: Counter[str] = Counter()
    for lines in pages:
        content = [line for line in lines if line.strip()]
        counts.update({_shape(line) for line in content[:_EDGE_LINES] + content[-_EDGE_LINES:]})
    return {shape for shape, n in counts.items() if n >= max(3, len(pages) / 2) and shape}


def _strip_edges(lines: list[str], running: set[str]) -> list[str]:
    def furniture(line: str) -> bool:
        words = " ".join(line.split())
        return not words or _shape(line) in running or _PAGE_NUMBER.fullmatch(words) is not None

    start, end = 0, len(lines)
    for _ in range(_EDGE_LINES + 1):
        while start < end and not lines[start].strip():
            start += 1
        if start < end and furniture(lines[start]):
            start += 1
    for _ in range(_EDGE_LINES + 1):
        while end > start and not lines[end - 1].strip():
            end -= 1
        if end > start and furniture(lines[end - 1]):
            end -= 1
    return lines[start:end]


_ENDS_PARAGRAPH = re.compile(r"[.!?:;…][\"'”’)\]]*$")
# A line shorter than this share of the page's usual line, ending like a sentence, ends its paragraph.
_SHORT_LINE = 0.8


def _paragraphs(lines: list[str]) -> str:
    """A page's lines with the breaks of its wrapped paragraphs made spaces: a sentence wrapped over two
    lines is one sentence again (sentences never cross a line break), while a line that ends a paragraph
    (short, and ending like a sentence) or a blank line keeps its break."""
    lines = [line.strip() for line in lines]
    lengths = sorted(len(line) for line in lines if line)
    usual = lengths[len(lengths) // 2] if lengths else 0
    out: list[str] = []
    for index, line in enumerate(lines):
        out.append(line)
        if index + 1 == len(lines):
            break
        following = lines[index + 1]
        ends = not line or not following or (len(line) < _SHORT_LINE * usual and _ENDS_PARAGRAPH.search(line))
        out.append("\n" if ends else " ")
    return re.sub(r"\n{3,}", "\n\n", "".join(out)).strip()


def extract_pdf(data: bytes, limits: Limits) -> Extracted:
    raw, title = _page_texts(data, limits)
    pages = [_clean(text).split("\n") for text in raw]
    running = _running_lines(pages)
    parts: list[str] = []
    starts: list[int] = []
    length = 0
    previous = ""  # the last page that had text
    for lines in pages:
        text = _paragraphs(_strip_edges(lines, running))
        if text and length:
            # A paragraph that runs on to the next page stays one paragraph (its passage cites both pages).
            joint = "\n\n" if _ENDS_PARAGRAPH.search(previous) else " "
            parts.append(joint)
            length += len(joint)
        previous = text or previous
        starts.append(length)
        parts.append(text)
        length += len(text)
    text = "".join(parts)
    if not text.strip():
        raise ExtractionError("a PDF with no text layer (scanned pages?); OCR is not enabled")
    return Extracted(text=text, media_type=PDF, title=title, pages=tuple(starts))
