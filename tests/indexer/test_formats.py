"""Text out of PDF, HTML, DOCX, Markdown and text files: pages, sections, encodings and every bad input."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.formats.docx import DOCX
from indexer.formats.extract import extract, sniff
from indexer.formats.extracted import ExtractionError, Limits
from indexer.formats.html import HTML
from indexer.formats.pdf import PDF
from indexer.formats.plain import MARKDOWN, TEXT, markdown_sections
from indexer.text.documents import Layout, document_from_file, read_sources
from tests.formats import docx_bytes, html_page, pdf_bytes

PAGES = [
    "The river rose in the spring of that year and the town moved its market to the hill above the bridge.",
    "Farmers brought barley and rye to the new market, and a toll was set at two pennies for every cart.",
    "By autumn the water had fallen and the council voted to keep the market on the hill for good.",
]


def test_pdf_pages_start_where_each_page_text_starts() -> None:
    extracted = extract(pdf_bytes(PAGES, title="The Market"), "market.pdf")
    assert extracted.media_type == PDF
    assert extracted.title == "The Market"
    assert len(extracted.pages) == 3
    layout = Layout(PDF, pages=extracted.pages)
    for number, page in enumerate(PAGES, start=1):
        word = page.split()[4]
        at = extracted.text.index(word, extracted.pages[number - 1])
        assert layout.page_range(at, at + len(word)) == (number, number)
    first, last = PAGES[0].split()[1], PAGES[2].split()[-1].rstrip(".")
    assert layout.page_range(extracted.text.index(first), extracted.text.rindex(last) + 1) == (1, 3)


def test_pdf_running_headers_footers_dropped_and_hyphens_joined() -> None:
    pages = [f"{p} A word was cut in two: the exam-\nple is joined again on page {i}." for i, p in enumerate(PAGES)]
    text = extract(pdf_bytes(pages, header="ACME Quarterly Report", footer=True)).text
    assert "ACME Quarterly Report" not in text
    assert "Page 2 of 3" not in text
    assert "example is joined" in text
    assert "barley and rye" in text


def test_pdf_bad_inputs_say_why() -> None:
    with pytest.raises(ExtractionError, match="encrypted PDF"):
        extract(pdf_bytes(PAGES, password="secret"))
    with pytest.raises(ExtractionError, match=r"no text layer.*OCR is not enabled"):
        extract(pdf_bytes(["", ""]))
    whole = pdf_bytes(PAGES)
    with pytest.raises(ExtractionError, match="damaged PDF"):
        extract(whole[: len(whole) // 2])
    with pytest.raises(ExtractionError, match=r"a PDF of 3 pages; the limit is 2 \(CITELINE_MAX_PDF_PAGES\)"):
        extract(whole, limits=Limits(max_pages=2))
    with pytest.raises(ExtractionError, match=r"over 100 characters.*CITELINE_MAX_DOCUMENT_CHARS"):
        extract(whole, limits=Limits(max_chars=100))
    with pytest.raises(ExtractionError, match="CITELINE_MAX_FILE_BYTES"):
        extract(whole, limits=Limits(max_bytes=1000))


def test_html_keeps_main_content_and_heading_paths() -> None:
    page = html_page(
        [("h1", "Flood"), ("p", "The river rose."), ("h2", "Market"), ("p", "It moved <uphill>."), ("h3", "Tolls"),
         ("p", "Two pennies a cart."), ("h2", "Autumn"), ("p", "The water fell.")],
        title="Town news",
    )  # fmt: skip
    extracted = extract(page.encode(), "page.html")
    assert extracted.media_type == HTML
    assert extracted.title == "Town news"
    text = extracted.text
    assert "It moved <uphill>." in text  # text, not markup
    for furniture in ("Home", "hacked", "color", "All rights reserved"):
        assert furniture not in text
    layout = Layout(HTML, sections=extracted.sections)
    assert layout.section_at(text.index("The river")) == "Flood"
    assert layout.section_at(text.index("Two pennies")) == "Flood › Market › Tolls"
    assert layout.section_at(text.index("The water")) == "Flood › Autumn"


def test_html_event_handlers_and_scripts_never_reach_the_text() -> None:
    page = b'<html><body><p onclick="steal()">Safe words<img src=x onerror=alert(1)></p><script>alert(2)</script>'
    text = extract(page).text
    assert text == "Safe words"


def test_docx_paragraphs_tables_and_headings() -> None:
    data = docx_bytes(
        [("Title", "Annual report"), ("Heading 1", "Results"), ("Normal", "Sales grew."), ("Heading 2", "Casualties"),
         ("Normal", "Nobody was hurt."), ("table", "Region|Sales"), ("Heading 1", "Outlook"), ("Normal", "Calm.")]
    )  # fmt: skip
    extracted = extract(data, "report.docx")
    assert extracted.media_type == DOCX
    assert extracted.title == "Annual report"
    layout = Layout(DOCX, sections=extracted.sections)
    assert layout.section_at(extracted.text.index("Nobody")) == "Results › Casualties"
    assert layout.section_at(extracted.text.index("Calm")) == "Outlook"
    assert "Region | Sales" in extracted.text


def test_docx_zip_bomb_and_damage_are_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"<" + b"a" * 50_000_000)
    with pytest.raises(ExtractionError, match="ZIP bomb"):
        extract(out.getvalue(), "bomb.docx")
    data = docx_bytes([("Normal", "text")])
    with pytest.raises(ExtractionError, match=r"damaged DOCX|ZIP archive"):
        extract(data[: len(data) // 2], "cut.docx")


def test_markdown_headings_outside_code_fences() -> None:
    text = "# Guide\n\nIntro.\n\n## Install\n\n```\n# not a heading\n```\n\nSetup\n-----\n\nRun it.\n"
    extracted = extract(text.encode(), "guide.md")
    assert extracted.media_type == MARKDOWN
    assert extracted.title == "Guide"
    layout = Layout(MARKDOWN, sections=extracted.sections)
    assert layout.section_at(text.index("```")) == "Guide › Install"
    assert layout.section_at(text.index("Run it")) == "Guide › Setup"
    assert extracted.text == text  # Markdown is its own text: offsets point into the file


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("Café crème brûlée".encode("cp1252"), "Café crème brûlée"),
        ("Ünïcödé text".encode("utf-16"), "Ünïcödé text"),
        ("\ufeffUTF-8 with a mark".encode(), "UTF-8 with a mark"),
        ("Привет, это текст на русском языке, довольно длинный.".encode("cp1251"), None),
    ],
)
def test_text_encodings_are_detected(data: bytes, expected: str | None) -> None:
    extracted = extract(data, "note.txt")
    assert extracted.media_type == TEXT
    if expected is not None:
        assert extracted.text == expected
    else:
        assert "Привет" in extracted.text


def test_type_is_sniffed_from_content_not_extension() -> None:
    assert sniff(pdf_bytes(PAGES), "notes.txt") == PDF
    assert sniff(html_page([("p", "x")]).encode(), "page.md") == HTML
    assert sniff(docx_bytes([("Normal", "x")]), "file.pdf") == DOCX
    assert sniff(b"Notes on the header: every file starts with %PDF-1.7", "notes.txt") == TEXT
    assert sniff(b"\x00\x01\xff%PDF-1.4 ...", "x") == PDF  # readers allow bytes before the header
    with pytest.raises(ExtractionError, match="binary content"):
        extract(bytes(range(256)) * 4, "file.txt")
    with pytest.raises(ExtractionError, match="an empty file"):
        extract(b" \n\n ", "empty.txt")
    with pytest.raises(ExtractionError, match="legacy Office"):
        extract(b"\xd0\xcf\x11\xe0" + b"\x00" * 100, "old.doc")


heading_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12).filter(str.strip)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), heading_text, st.text(max_size=40)), min_size=1, max_size=6))
def test_markdown_sections_point_at_their_headings(parts: list[tuple[int, str, str]]) -> None:
    lines = []
    for level, heading, text in parts:
        clean = " ".join(heading.replace("#", "").split())
        safe = "\n".join("  " + line for line in text.splitlines() if line.strip())
        lines.append(f"{'#' * level} {clean}\n\n{safe}\n")
    markdown = "\n".join(lines)
    found = markdown_sections(markdown)
    expected = [" ".join(h.replace("#", "").split()) for _, h, _ in parts]
    assert [h for _, _, h in found] == [e for e in expected if e]
    for start, level, heading in found:
        assert markdown[start:].startswith("#" * level + " " + heading)
        assert start == 0 or markdown[start - 1] == "\n"  # where the heading's line starts: a passage break


def test_a_folder_of_every_format_with_bad_files_indexes_the_rest(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "report.pdf").write_bytes(pdf_bytes(PAGES))
    (folder / "Town News.html").write_text(html_page([("h1", "Flood"), ("p", "The river rose.")]))
    (folder / "memo.docx").write_bytes(docx_bytes([("Heading 1", "Memo"), ("Normal", "Meet at noon.")]))
    (folder / "guide.md").write_text("# Guide\n\nRead me.\n")
    (folder / "plain.txt").write_text("Just text.\n")
    (folder / "locked.pdf").write_bytes(pdf_bytes(PAGES, password="x"))
    (folder / "empty.txt").write_text("")
    (folder / "notes.txt").write_bytes(pdf_bytes(["A PDF named like text."]))
    (folder / ".hidden.txt").write_text("never read")
    (folder / "image.png").write_bytes(b"\x89PNG")
    loaded = read_sources([folder])
    by_id = {d.doc_id: d for d in loaded.documents}
    assert sorted(by_id) == ["Town_News", "guide", "memo", "notes", "plain", "report"]
    assert {f.doc_id: f.reason.split(": ", 1)[1] for f in loaded.failures} == {
        "locked": "an encrypted PDF: it needs a password to be read",
        "empty": "an empty file",
    }
    assert by_id["notes"].layout is not None and by_id["notes"].layout.media_type == PDF
    assert by_id["plain"].layout is None  # plain text is its own original, as before
    report = by_id["report"]
    assert report.layout is not None and report.layout.original and report.original == folder / "report.pdf"


def test_content_hash_changes_with_layout_only_when_there_is_one() -> None:
    a = document_from_file(b"# One\n\ntext\n", "a", "a.md", "a.md")
    b = document_from_file(b"# Two\n\ntext\n", "a", "a.md", "a.md")
    assert a.content_hash != b.content_hash
    plain = document_from_file(b"text\n", "p", "p.txt", "p.txt")
    assert plain.layout is None


def test_pdf_wrapped_lines_are_one_paragraph_and_a_sentence_may_run_on_to_the_next_page() -> None:
    wrapped = (
        "The council met in the old grain hall on a cold morning in March, and after a long debate about tolls, "
        "bridges and the price of barley it agreed that the market would stay on the hill for good."
    )
    pages = [f"{wrapped}\nShort closing line.\nThe last sentence of this page continues on the", "next page, here."]
    extracted = extract(pdf_bytes(pages))
    text = extracted.text
    assert wrapped in text  # the lines it was wrapped into are one line again
    crossing = text.index("The last sentence")
    end = text.index("here.") + len("here.")
    assert "continues on the next page, here." in text
    assert Layout(PDF, pages=extracted.pages).page_range(crossing, end) == (1, 2)
