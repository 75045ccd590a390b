"""Files of every format, generated for the tests (no binary fixtures are committed)."""

from __future__ import annotations

import html
import io
from collections.abc import Sequence

import docx
from fpdf import FPDF


def pdf_bytes(
    pages: Sequence[str],
    title: str | None = None,
    header: str | None = None,
    footer: bool = False,
    password: str | None = None,
) -> bytes:
    """A PDF with one page per item of `pages` (its text wrapped to the page width); a running `header` line
    on every page and a "Page n of N" footer when asked."""
    pdf = FPDF()
    pdf.set_auto_page_break(False)
    if title:
        pdf.set_title(title)
    if password:
        pdf.set_encryption(owner_password="owner", user_password=password)
    for number, text in enumerate(pages, start=1):
        pdf.add_page()
        pdf.set_font("helvetica", size=11)
        if header:
            pdf.cell(0, 8, header, new_x="LMARGIN", new_y="NEXT")
        if text:
            pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
        if footer:
            pdf.set_xy(10, 280)
            pdf.cell(0, 8, f"Page {number} of {len(pages)}", align="C")
    return bytes(pdf.output())


def docx_bytes(blocks: Sequence[tuple[str, str]], title: str | None = None) -> bytes:
    """A Word document of (style, text) paragraphs: style "Title", "Heading 1".."Heading 9", "Normal", or
    "table" with cells separated by "|"."""
    document = docx.Document()
    if title:
        document.core_properties.title = title
    for style, text in blocks:
        if style == "table":
            cells = text.split("|")
            table = document.add_table(rows=1, cols=len(cells))
            for cell, value in zip(table.rows[0].cells, cells, strict=True):
                cell.text = value
        else:
            document.add_paragraph(text, style=style)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def html_page(blocks: Sequence[tuple[str, str]], title: str = "A page") -> str:
    """A page with site furniture (navigation, a script, a footer) around a `<main>` of (tag, text) blocks."""
    body = "".join(f"<{tag}>{html.escape(text)}</{tag}>" for tag, text in blocks)
    return (
        f"<!DOCTYPE html><html><head><title>{html.escape(title)}</title>"
        "<script>document.title = 'hacked'</script><style>p { color: red }</style></head>"
        "<body><nav><a href='/'>Home</a> <a href='/news'>News</a></nav>"
        f"<main>{body}</main>"
        "<footer>Copyright the site. All rights reserved.</footer></body></html>"
    )
