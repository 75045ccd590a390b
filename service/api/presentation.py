"""What the HTML pages show, as plain data: text split around a marked span, and input errors in plain words."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from pydantic import ValidationError

from indexer.text.sentences import Span
from service.api.schemas import SearchRequest, SearchResult
from service.search.retrieval import Mode

OFFSET = re.compile(r"[0-9]{1,12}")  # plain digits only: int() would also take " 5", "+5", "5_0" and other scripts


class PageInputError(ValueError):
    """Input a page cannot use; each message says what is wrong and how to fix it, for the page to show."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class Marked:
    """A text cut around one span: `before + marked + after` is the whole text."""

    before: str
    marked: str
    after: str


def split_around(text: str, start: int, end: int) -> Marked:
    """`text` cut at `[start, end)`; the caller has checked `0 <= start <= end <= len(text)`."""
    return Marked(before=text[:start], marked=text[start:end], after=text[end:])


@dataclass(frozen=True)
class ResultView:
    """One search result as the page lays it out."""

    result: SearchResult
    passage: Marked
    view_url: str
    original_url: str | None = None  # the original PDF, opened at the page the passage starts on


@dataclass(frozen=True)
class Place:
    """Where a collection's pages and API live: "" for the default collection, else `/c/{name}` (pages) and
    `/collections/{name}` (API)."""

    pages: str = ""
    api: str = ""

    @classmethod
    def of(cls, collection: str | None) -> Place:
        if collection is None:
            return cls()
        name = quote(collection, safe="")
        return cls(f"/c/{name}", f"/collections/{name}")

    @property
    def home(self) -> str:
        return f"{self.pages}/"


def document_url(doc_id: str, place: Place = Place()) -> str:
    """Link to the document view of the whole document, nothing marked."""
    return f"{place.pages}/view/{quote(doc_id, safe='')}"


def view_url(doc_id: str, start: int, end: int, place: Place = Place()) -> str:
    """Link to the document view with `[start, end)` marked and scrolled to."""
    return f"{document_url(doc_id, place)}?{urlencode({'start': start, 'end': end})}#cited"


def original_url(doc_id: str, page: int | None = None, place: Place = Place()) -> str:
    """Link to the document's original file (`GET /documents/{doc_id}/source`), at `page` for a PDF."""
    return f"{place.api}/documents/{quote(doc_id, safe='')}/source" + (f"#page={page}" if page else "")


def result_view(result: SearchResult, place: Place = Place()) -> ResultView:
    """The passage cut around its highlight sentence (both offsets are in the same document)."""
    c, h = result.citation, result.highlight
    return ResultView(
        result=result,
        passage=split_around(result.text, h.start - c.start, h.end - c.start),
        view_url=view_url(c.doc_id, c.start, c.end, place),
        original_url=original_url(c.doc_id, c.page, place) if c.page else None,
    )


def _k_bounds() -> tuple[int, int]:
    """SearchRequest's own limits on `k`, so the message cannot drift from the rule."""
    k = SearchRequest.model_json_schema()["properties"]["k"]
    return int(k["minimum"]), int(k["maximum"])


def friendly_messages(error: ValidationError) -> list[str]:
    """SearchRequest's validation errors in words for a person at the search box (its rules, not copies of them)."""
    messages = []
    for item in error.errors():
        field, kind, value = item["loc"][0] if item["loc"] else "", item["type"], item.get("input")
        if field == "q" and kind == "string_too_long":
            limit = item.get("ctx", {}).get("max_length")
            messages.append(f"The question is too long: {len(str(value))} characters, the limit is {limit}.")
        elif field == "q":
            messages.append("Type a question to search: it cannot be empty or only spaces.")
        elif field == "k":
            low, high = _k_bounds()
            messages.append(f"Number of results (k) must be a whole number from {low} to {high}, not {value!r}.")
        elif field == "mode":
            messages.append(f"Mode must be one of {', '.join(m.value for m in Mode)}, not {value!r}.")
        else:
            messages.append(f"{field}: {item['msg']}")
    return messages


def search_request(q: str, k: str | None, mode: str | None) -> SearchRequest:
    """The search a page URL asks for; an empty `k` or `mode` (a cleared form field) means the default."""
    values: dict[str, str] = {"q": q}
    if k:
        values["k"] = k
    if mode:
        values["mode"] = mode
    try:
        return SearchRequest.model_validate(values)
    except ValidationError as error:
        raise PageInputError(friendly_messages(error)) from error


def cited_span(start: str | None, end: str | None, length: int) -> Span | None:
    """The span a document view marks, from its URL; None (mark nothing) when neither offset is given."""
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise PageInputError(["start and end go together: give both to mark a span, or neither to read the document."])
    errors = [
        f"{name} must be a whole number (a character offset), not {raw!r}."
        for name, raw in (("start", start), ("end", end))
        if not OFFSET.fullmatch(raw)
    ]
    if errors:
        raise PageInputError(errors)
    span = Span(int(start), int(end))
    if not 0 <= span.start <= span.end <= length:
        raise PageInputError(
            [f"The span {span.start}:{span.end} is not inside this document: it needs 0 ≤ start ≤ end ≤ {length}."]
        )
    return span
