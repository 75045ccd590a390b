"""Plain text and Markdown: the encoding detected, Markdown headings kept as sections."""

from __future__ import annotations

import codecs
import re

from indexer.formats.extracted import Extracted, ExtractionError, Outline

TEXT = "text/plain"
MARKDOWN = "text/markdown"
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Control characters text never holds (tab, newlines, form feed and escape aside): their presence means binary.
_BINARY = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")


def decode(data: bytes) -> str:
    """The text of `data`: a byte-order mark decides, else UTF-8, else the encoding charset-normalizer finds
    most likely (cp1252, Latin-1, ...). Content with NUL or other control bytes is binary, not text."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding).removeprefix("\ufeff")
            except UnicodeDecodeError as error:
                reason = f"not valid {encoding.upper()} after its byte-order mark ({error.reason})"
                raise ExtractionError(reason) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if _BINARY.search(data[:65536]):
        raise ExtractionError("binary content, not text, and not a PDF, HTML or DOCX file")
    for encoding in [*_likely_encodings(data[:1_000_000]), "cp1252"]:
        try:
            return data.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    raise ExtractionError("undecodable text: not UTF-8, UTF-16 and no other encoding fits")


_WESTERN = ("cp1252", "latin_1", "iso8859_15")


def _likely_encodings(data: bytes) -> list[str]:
    """charset-normalizer's guesses, best first, but cp1252 first when the best is not clearly better than
    other guesses (short or mostly ASCII text, where several code pages decode alike and it cannot tell)."""
    from charset_normalizer import from_bytes

    # UTF-16/32 come with a byte-order mark (handled before); without one their NUL bytes read as binary.
    matches = [m for m in from_bytes(data) if not m.encoding.startswith(("utf_16", "utf_32"))]
    if not matches:
        return []
    best = matches[0]
    ties = [m for m in matches if m.chaos <= best.chaos + 0.01 and m.coherence >= best.coherence - 0.01]
    ambiguous = len(ties) > 1 or best.encoding in _WESTERN
    return (["cp1252"] if ambiguous else []) + [m.encoding for m in matches]


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")


def markdown_sections(text: str) -> list[tuple[int, int, str]]:
    """(start, level, heading) of every ATX (`# Title`) and setext (underlined) heading outside code fences."""
    headings: list[tuple[int, int, str]] = []
    fence = ""
    at = 0
    previous: tuple[int, str] | None = None  # the last plain line, a setext heading's candidate text
    for line in text.splitlines(keepends=True):
        stripped = line.rstrip("\r\n")
        opener = _FENCE.match(stripped)
        if fence:
            if opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= len(fence):
                fence = ""
        elif opener:
            fence = opener.group(1)
            previous = None
        elif atx := _ATX.match(stripped):
            indent = len(stripped) - len(stripped.lstrip())
            headings.append((at + indent, len(atx.group(1)), (atx.group(2) or "").strip()))
            previous = None
        elif (setext := _SETEXT.match(stripped)) and previous is not None:
            headings.append((previous[0], 1 if setext.group(1)[0] == "=" else 2, previous[1].strip()))
            previous = None
        else:
            previous = (at + len(stripped) - len(stripped.lstrip()), stripped) if stripped.strip() else None
        at += len(line)
    return [(start, level, heading) for start, level, heading in headings if heading]


def extract_text(data: bytes, markdown: bool) -> Extracted:
    text = decode(data)
    if not markdown:
        return Extracted(text=text, media_type=TEXT)
    outline = Outline()
    title = None
    for start, level, heading in markdown_sections(text):
        outline.heading(start, level, heading)
        if title is None and level == 1:
            title = " ".join(heading.split())
    return Extracted(text=text, media_type=MARKDOWN, title=title, sections=tuple(outline.sections))
