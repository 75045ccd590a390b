"""HTML: the page's main content as paragraphs, headings as sections; navigation, scripts and forms dropped.

Parsed by lxml (libxml2's forgiving HTML parser). Nothing is executed or rendered: scripts, styles and event
handlers are removed with their elements, and the text is plain text.
"""

from __future__ import annotations

import re

from lxml import etree
from lxml import html as lxml_html

from indexer.formats.extracted import Extracted, ExtractionError, Outline

HTML = "text/html"
# Elements whose content is never article text.
_DROP = {
    "script", "style", "noscript", "template", "iframe", "svg", "math", "canvas", "form", "button", "select",
    "input", "textarea", "object", "embed", "nav", "aside", "dialog", "head",
}  # fmt: skip
_DROP_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar", "dialog"}
_BLOCKS = {
    "p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "pre", "blockquote", "table",
    "tr", "td", "th", "caption", "figure", "figcaption", "header", "footer", "address", "hr", "details",
    "summary", "h1", "h2", "h3", "h4", "h5", "h6", "body", "html",
}  # fmt: skip
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*>")


def looks_like_html(text: str) -> bool:
    head = text[:4096].lstrip("\ufeff \t\r\n").lower()
    return head.startswith(("<!doctype html", "<html")) or re.search(r"<(head|body)[\s>]", head) is not None


def _dropped(element: etree._Element) -> bool:
    if not isinstance(element.tag, str):  # comments, processing instructions
        return True
    tag = element.tag.lower()
    if tag in _DROP or element.get("hidden") is not None or element.get("aria-hidden") == "true":
        return True
    if (element.get("role") or "").lower() in _DROP_ROLES:
        return True
    # A page's own header and footer (site furniture), not those inside the article.
    return tag in ("header", "footer") and not any(
        isinstance(a.tag, str) and a.tag.lower() in ("article", "main") for a in element.iterancestors()
    )


def _main(root: etree._Element) -> etree._Element:
    """The element holding the page's main content: `<main>` (or role=main), the one `<article>`, else body."""
    for xpath in ("//main", "//*[@role='main']"):
        found = root.xpath(xpath)
        if found:
            return found[0]
    articles = root.xpath("//article")
    if len(articles) == 1:
        return articles[0]
    body = root.find("body")
    return body if body is not None else root


class _Writer:
    """Paragraphs of collapsed text joined by blank lines, with each heading's offset."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.line: list[str] = []
        self.outline = Outline()

    def text(self, value: str | None, keep_space: bool = False) -> None:
        if value:
            self.line.append(value if keep_space else re.sub(r"\s+", " ", value))

    def flush(self) -> int | None:
        """End the paragraph being written; its start, or None if it was empty."""
        paragraph = "".join(self.line)
        self.line = []
        paragraph = "\n".join(" ".join(line.split()) for line in paragraph.split("\n")).strip()
        if not paragraph:
            return None
        if self.parts:
            self.parts.append("\n\n")
            self.length += 2
        start = self.length
        self.parts.append(paragraph)
        self.length += len(paragraph)
        return start


def _walk(element: etree._Element, writer: _Writer, keep_space: bool = False) -> None:
    tag = element.tag.lower() if isinstance(element.tag, str) else ""
    if tag in _HEADINGS:
        writer.flush()
        writer.text(element.text_content())
        start = writer.flush()
        if start is not None:
            writer.outline.heading(start, _HEADINGS[tag], writer.parts[-1])
        return
    block = tag in _BLOCKS
    if block:
        writer.flush()
    if tag == "br":
        writer.text("\n", keep_space=True)
    keep_space = keep_space or tag == "pre"
    writer.text(element.text, keep_space)
    for child in element:
        if not _dropped(child):
            _walk(child, writer, keep_space)
        writer.text(child.tail, keep_space)
    if block:
        writer.flush()


def _title(root: etree._Element) -> str | None:
    for xpath in ("//meta[@property='og:title']/@content", "//title//text()", "//h1//text()"):
        found = " ".join(" ".join(str(t) for t in root.xpath(xpath)).split())
        if found:
            return found[:1000]
    return None


def extract_html(text: str) -> Extracted:
    text = _XML_DECLARATION.sub("", text, count=1)  # lxml refuses a str that declares its own encoding
    if not text.strip():
        raise ExtractionError("an empty HTML page")
    try:
        root = lxml_html.document_fromstring(text)
    except (etree.ParserError, ValueError) as error:
        raise ExtractionError(f"HTML that cannot be parsed ({error})") from None
    title = _title(root)
    writer = _Writer()
    _walk(_main(root), writer)
    writer.flush()
    return Extracted(text="".join(writer.parts), media_type=HTML, title=title, sections=tuple(writer.outline.sections))
