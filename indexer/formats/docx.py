"""Word documents (.docx): paragraphs and tables in body order, headings (styles "Title", "Heading n") as
sections. Read with python-docx after the ZIP's expanded size is checked."""

from __future__ import annotations

import io
import re
import zipfile

from indexer.formats.extracted import Extracted, ExtractionError, Limits, Outline

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_HEADING_STYLE = re.compile(r"heading (\d)", re.IGNORECASE)


def is_docx(data: bytes) -> bool:
    """A ZIP that holds `word/document.xml`."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def _check_expansion(data: bytes, limits: Limits) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            expanded = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise ExtractionError(f"a damaged DOCX file ({error})") from None
    limit = min(limits.max_bytes, len(data) * limits.max_expansion) if len(data) else 0
    if expanded > max(limit, 1_000_000):
        raise ExtractionError(
            f"a DOCX file that expands to {expanded:,} bytes (over {max(limit, 1_000_000):,}): refused as a "
            "possible ZIP bomb"
        )


def _level(style_name: str) -> int | None:
    """The outline level of a paragraph style: "Heading n" is n; the "Title" style names the document, no section."""
    match = _HEADING_STYLE.fullmatch(style_name)
    return int(match.group(1)) if match else None


def extract_docx(data: bytes, limits: Limits) -> Extracted:
    _check_expansion(data, limits)
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as error:  # python-docx raises KeyError, ValueError, lxml errors... for damaged files
        raise ExtractionError(f"a damaged DOCX file ({type(error).__name__}: {error})") from None
    parts: list[str] = []
    length = 0
    outline = Outline()
    title = (document.core_properties.title or "").strip() or None

    def add(paragraph: str) -> int | None:
        nonlocal length
        paragraph = "\n".join(" ".join(line.split()) for line in paragraph.splitlines()).strip()
        if not paragraph:
            return None
        if parts:
            parts.append("\n\n")
            length += 2
        parts.append(paragraph)
        length += len(paragraph)
        return length - len(paragraph)

    for block in document.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                cells: list[str] = []
                for cell in row.cells:  # a merged cell is listed once per grid column it spans
                    text = " ".join(cell.text.split())
                    if text and (not cells or cells[-1] != text):
                        cells.append(text)
                add(" | ".join(cells))
            continue
        style = block.style.name if block.style is not None else ""
        start = add(block.text)
        level = _level(style)
        if start is not None and level is not None:
            outline.heading(start, level, parts[-1])
        elif start is not None and title is None and style.lower() == "title":
            title = parts[-1]
        if length > limits.max_chars:
            break
    text = "".join(parts)
    return Extracted(text=text, media_type=DOCX, title=title, sections=tuple(outline.sections))
