"""Request and response models of the HTTP API; their docstrings and examples become the OpenAPI docs."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from indexer.text.documents import SourceError, validate_doc_id
from service.search.filters import DATE_FIELD, SearchFilter, metadata_text, parse_date
from service.search.retrieval import Mode

MAX_QUERY_CHARS = 1000
MAX_BULK_DOCUMENTS = 1000
MetadataValue = str | int | float | bool
# The rules the validators enforce, as JSON Schema patterns, so that clients and fuzzers see them too.
# Whitespace as Python's str.isspace and JSON Schema's (ECMA-262) \s both see it: the union of the two.
HAS_CONTENT = r"[^\s\x1c-\x1f\x85\ufeff]"  # not only whitespace
_ID_CHAR = r"[^\s/\\.\x00-\x1f\x7f\x85\ufeff]"
# validate_doc_id: no whitespace, '/', '\\' or control characters, no leading '.', no '..' (1-200 long).
DOC_ID_PATTERN = rf"^{_ID_CHAR}(?:{_ID_CHAR}|\.{_ID_CHAR})*\.?$"
DOC_ID_SCHEMA: dict[str, Any] = {"pattern": DOC_ID_PATTERN, "minLength": 1, "maxLength": 200}
FILTER_PATTERN = r"^[^:]*[^:\s\x1c-\x1f\x85\ufeff][^:]*:"  # field:value with a non-blank field
ISO_DAY = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"  # JSON Schema's "date" format: an RFC 3339 full-date


class SearchBase(BaseModel):
    """What every search takes: the question, k, mode and the filters."""

    model_config = ConfigDict(extra="forbid")

    q: str = Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description="The question, 1 to 1000 characters, not only whitespace.",
        examples=["how many US troops were sent"],
        json_schema_extra={"pattern": HAS_CONTENT},
    )
    k: int = Field(default=5, ge=1, le=100, description="Number of passages to return, 1 to 100.")
    mode: Mode = Field(
        default=Mode.hybrid,
        description="`hybrid` (dense + BM25: normalised scores, equally weighted), `dense` or `bm25`.",
    )

    doc_id: list[str] = Field(
        default_factory=list, description="Only passages of these documents (repeatable: `?doc_id=a&doc_id=b`)."
    )
    source: str | None = Field(
        default=None, max_length=1000, description="Only documents whose `source` starts with this prefix."
    )
    date_from: date | None = Field(
        default=None, description="Only documents whose metadata `date` (ISO 8601) is on or after this day."
    )
    date_to: date | None = Field(
        default=None, description="Only documents whose metadata `date` (ISO 8601) is on or before this day."
    )

    @field_validator("q")
    @classmethod
    def q_has_content(cls, value: str) -> str:
        if not re.search(HAS_CONTENT, value):
            raise ValueError("q must contain at least one non-whitespace character")
        return value

    # Pydantic alone would also take a number of seconds since 1970 ("0") or a date-time: the schema says a day.
    @field_validator("date_from", "date_to", mode="before")
    @classmethod
    def dates_are_days(cls, value: Any) -> Any:
        if isinstance(value, str) and not re.fullmatch(ISO_DAY, value):
            raise ValueError(f"{value[:40]!r} is not a day: dates are ISO 8601 YYYY-MM-DD, e.g. 2017-03-09")
        return value

    @model_validator(mode="after")
    def dates_in_order(self) -> SearchBase:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError("date_from must not be after date_to")
        return self

    def metadata_filter(self) -> dict[str, str]:
        return {}

    def search_filter(self) -> SearchFilter:
        """The filters of this request as one `SearchFilter`."""
        return SearchFilter(
            doc_ids=frozenset(self.doc_id),
            source_prefix=self.source or None,
            metadata=self.metadata_filter(),
            date_from=self.date_from,
            date_to=self.date_to,
        )


class SearchQuery(SearchBase):
    """`GET /search` query string: a question, how many passages, ranked how, and optional filters."""

    filter: list[str] = Field(
        default_factory=list,
        description="Metadata equality as `field:value`, repeatable (`?filter=publisher:RT`); all must hold.",
        examples=[["publisher:RT"]],
        json_schema_extra={"items": {"type": "string", "pattern": FILTER_PATTERN}},
    )

    @field_validator("filter")
    @classmethod
    def filters_are_field_value(cls, values: list[str]) -> list[str]:
        for value in values:
            if not re.search(FILTER_PATTERN, value):
                raise ValueError(f"filter {value!r} must be field:value, e.g. publisher:RT")
        return values

    def metadata_filter(self) -> dict[str, str]:
        return dict(value.partition(":")[::2] for value in self.filter)


class SearchRequest(SearchBase):
    """`POST /search` body: a question, how many passages, ranked how, and optional filters."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"q": "how many US troops were sent", "k": 5, "mode": "hybrid"},
                {"q": "who took Manbij", "k": 3, "filter": {"publisher": "RT"}, "date_from": "2017-01-01"},
            ]
        },
    )

    filter: dict[str, MetadataValue] = Field(
        default_factory=dict, description="Metadata equality: every field must equal its value."
    )

    def metadata_filter(self) -> dict[str, str]:
        return {name: metadata_text(value) for name, value in self.filter.items()}


class SearchBody(SearchRequest):
    """`POST /search` body: a question, how many passages, ranked how, and optional filters (JSON types)."""

    # JSON has types: a number is not a date and a string is not a number (query strings are all text).
    @field_validator("k", mode="before")
    @classmethod
    def k_is_a_json_integer(cls, value: Any) -> Any:
        if isinstance(value, str | bool):
            raise ValueError("k must be a valid integer: a JSON number such as 5, not a string or a boolean")
        return value

    @field_validator("date_from", "date_to", mode="before")
    @classmethod
    def dates_are_strings(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise ValueError("dates are ISO 8601 strings, e.g. 2017-03-09")
        return value


class Citation(BaseModel):
    """Where a passage comes from: `GET /documents/{doc_id}` text`[start:end]` equals the passage text."""

    doc_id: str = Field(examples=["001_2c0b17beeba9964b"])
    title: str | None = Field(default=None, examples=["US sends more troops to crush IS"])
    source: str = Field(examples=["seeds/001_2c0b17beeba9964b.txt"])
    start: int = Field(description="Start offset (Python string index) in the document's original text.")
    end: int = Field(description="End offset (exclusive) in the document's original text.")
    page: int | None = Field(
        default=None, description="1-based page of the original file on which the passage starts (PDF)."
    )
    page_end: int | None = Field(default=None, description="1-based page on which the passage ends (PDF).")
    section: str | None = Field(
        default=None,
        description="Heading path in effect where the passage starts (Markdown, HTML, DOCX).",
        examples=["Results › Casualties"],
    )


class Highlight(BaseModel):
    """The sentence of the passage that best answers the question, with offsets in the same document."""

    text: str
    start: int
    end: int


class Scores(BaseModel):
    """Per-retriever scores: cosine similarity, BM25, and the score the ranking used."""

    dense: float
    bm25: float
    fused: float


class SearchResult(BaseModel):
    """One ranked passage."""

    rank: int
    score: float = Field(description="The ranking score: fused (0..1) for hybrid, cosine for dense, BM25 for bm25.")
    text: str
    citation: Citation
    highlight: Highlight
    scores: Scores
    duplicates: list[Citation] = Field(
        default_factory=list,
        description="Near-identical passages of other documents (the same story syndicated), folded into this one.",
    )


class SearchResponse(BaseModel):
    """Ranked passages for a question."""

    query: str
    mode: Mode
    took_ms: float
    results: list[SearchResult]


class _Passages(BaseModel):
    """A count of passages, also under its deprecated name `chunks` (same value) until clients move."""

    passages: int = Field(description="Number of passages.")
    chunks: int = Field(
        default=0,
        deprecated="`chunks` is the old name of `passages` and will be removed in a future release",
        description="Deprecated: the same number as `passages`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _old_name(cls, values: Any) -> Any:
        if isinstance(values, dict) and "passages" in values:
            values = {**values, "chunks": values["passages"]}
        return values


class DocumentSummary(_Passages):
    """A document of the index."""

    doc_id: str
    title: str | None
    source: str
    length: int = Field(description="Length of the original text in characters.")


class DocumentList(BaseModel):
    """All documents of the index."""

    documents: list[DocumentSummary]


class DocumentDetail(DocumentSummary):
    """A document with its full original text, against which citations are checked."""

    text: str
    metadata: dict[str, object] = Field(default_factory=dict)


class Health(_Passages):
    """Service status and what it serves."""

    status: str = Field(examples=["ok"])
    documents: int
    model: str
    snapshot: str = Field(description="Version of the served index: the sequence number of its last write.")


class ErrorMessage(BaseModel):
    """An error with a message that says what is wrong and what to do."""

    detail: str


class ValidationIssue(BaseModel):
    """One broken rule of a request: where (`loc`, e.g. `["query", "k"]`) and what (`msg`)."""

    loc: list[str | int]
    msg: str
    type: str


class InputError(BaseModel):
    """A request that breaks a rule: the field and the rule, as a message or as a list of issues."""

    detail: str | list[ValidationIssue]


class Ready(_Passages):
    """The service can answer: its index is loaded and up to date with the store."""

    status: str = Field(examples=["ready"])
    snapshot: str
    documents: int


class NotReady(BaseModel):
    """The service should not get traffic now, and why."""

    status: str = Field(examples=["not ready"])
    detail: str


# Responses every API route can give besides its own.
UNAVAILABLE = {
    "model": ErrorMessage,
    "description": "Busy: the request ran past CITELINE_REQUEST_TIMEOUT_SECONDS, or too many writes are waiting "
    "(CITELINE_MAX_QUEUED_WRITES), or the index cannot be written now. Retry after `Retry-After` seconds.",
    "headers": {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}},
}
BAD_INPUT = {"model": InputError, "description": "A parameter or the body breaks a rule; the message names it."}
BAD_BODY = {"model": ErrorMessage, "description": "The body cannot be parsed at all (not UTF-8 JSON)."}
# Reads are open unless CITELINE_READ_KEY is set: the key is optional as far as the schema can tell.
OPTIONAL_KEY: dict[str, Any] = {"security": [{}]}
TOO_LARGE = {"model": ErrorMessage, "description": "Request body larger than CITELINE_MAX_BODY_BYTES."}
NEEDS_READ_KEY = {
    "model": ErrorMessage,
    "description": "The collection is private (or CITELINE_READ_KEY is set) and the request has no key, or one "
    "that matches none.",
}
LACKS_SCOPE = {"model": ErrorMessage, "description": "The key lacks the scope this needs on the collection."}
UNKNOWN_COLLECTION = {"model": ErrorMessage, "description": "No collection has this name."}


def _check_doc_id(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_doc_id(value)
    except SourceError as error:
        raise ValueError(str(error)) from None


class DocumentIn(BaseModel):
    """A document to index. Without `doc_id`, one is derived from the content (`doc-` + hash)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "doc_id": "rt-2017-03-09-manbij",
                    "title": "US Marines deployed near Raqqa",
                    "text": "The US has deployed a Marine artillery unit to Syria ...",
                    "metadata": {"publisher": "RT", "date": "2017-03-09"},
                }
            ]
        },
    )

    doc_id: str | None = Field(
        default=None,
        description="1-200 printable characters without whitespace, '/' or '\\', not starting with '.', no '..'.",
        json_schema_extra={"anyOf": [{"type": "string", **DOC_ID_SCHEMA}, {"type": "null"}]},
    )
    title: str | None = Field(default=None, max_length=1000)
    text: str = Field(
        min_length=1,
        description="The original text; citations are offsets into it.",
        json_schema_extra={"pattern": HAS_CONTENT},
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Any JSON fields; `date` (ISO 8601) enables date filters.",
        json_schema_extra={
            "properties": {
                "date": {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]}
            }
        },
    )

    @field_validator("doc_id")
    @classmethod
    def doc_id_is_safe(cls, value: str | None) -> str | None:
        return _check_doc_id(value)

    @field_validator("text")
    @classmethod
    def text_has_content(cls, value: str) -> str:
        if not re.search(HAS_CONTENT, value):
            raise ValueError("text must contain at least one non-whitespace character")
        return value

    @field_validator("metadata")
    @classmethod
    def date_is_iso(cls, value: dict[str, Any]) -> dict[str, Any]:
        if DATE_FIELD in value and parse_date(value[DATE_FIELD]) is None:
            raise ValueError("metadata.date must be an ISO 8601 date or date-time string, e.g. 2017-03-09")
        return value


class DocumentBatch(BaseModel):
    """Several documents written in one atomic step: all of them are indexed, or none."""

    model_config = ConfigDict(extra="forbid")

    documents: list[DocumentIn] = Field(min_length=1, max_length=MAX_BULK_DOCUMENTS)


def _write_kind(value: Any) -> str:
    return "bulk" if isinstance(value, dict) and "documents" in value else "one"


DocumentWrite = Annotated[
    Annotated[DocumentIn, Tag("one")] | Annotated[DocumentBatch, Tag("bulk")],
    Discriminator(_write_kind),
]


class WrittenDocument(_Passages):
    """A document that was written."""

    doc_id: str
    created: bool = Field(description="True if it is new, false if it replaced a document with the same id.")


class FailedFile(BaseModel):
    """An uploaded file that was not indexed, and why."""

    file: str = Field(description="The file's name as uploaded.")
    reason: str = Field(examples=["an encrypted PDF: it needs a password to be read"])


class ReindexStatus(BaseModel):
    """A reindex: where it is, the figures of both indexes on the collection's questions, and the decision."""

    phase: str = Field(description="`queued`, `building`, `catching up`, `evaluating`, `switched` or `refused`.")
    settings: dict[str, int] = Field(description="The new index's settings.")
    before: dict[str, float] | None = Field(description="The live index's figures (hybrid) on the questions.")
    after: dict[str, float] | None = Field(description="The new index's figures on the same questions.")
    decision: str | None = Field(description="`switched`, `forced` (switched despite the gate) or `refused`.")
    reasons: list[str] = Field(description="Each chosen metric that fell by more than the threshold.")
    seconds: float | None = Field(description="How long the reindex took, once it has ended.")


class JobStatus(BaseModel):
    """An upload, folder sync or reindex: what it has done so far, and what is left."""

    id: str
    kind: str = Field(description="`upload`, `sync` or `reindex`.")
    target: str = Field(description="The folder synced, or how many files were uploaded.")
    state: str = Field(description="`queued`, `running`, `done` or `failed` (see `error`).")
    total: int = Field(description="Files to read.")
    done: int = Field(description="Files read so far, whatever became of them.")
    indexed: int
    unchanged: int
    removed: int = Field(description="Documents of deleted files removed (syncs).")
    failed: int
    failures: list[FailedFile]
    progress: float = Field(description="Share of the files read, 0..1.")
    eta_seconds: float | None = Field(description="Seconds left at the rate so far; null until a file is read.")
    error: str | None = Field(description="Why the job stopped short, when its state is `failed`.")
    created: float = Field(description="Unix time the job was queued.")
    started: float | None
    finished: float | None
    reindex: ReindexStatus | None = Field(default=None, description="A reindex's own report (reindex jobs).")


class JobList(BaseModel):
    """Recent jobs, oldest first."""

    jobs: list[JobStatus]


class WriteResponse(BaseModel):
    """What a write did; the new state is durable on disk and searched from now on."""

    documents: list[WrittenDocument]
    snapshot: str = Field(description="Version of the index that holds the write: the sequence number of the write.")
    failed: list[FailedFile] = Field(
        default_factory=list, description="Uploaded files that were not indexed (multipart uploads only)."
    )


# -- collections and keys ----------------------------------------------------------------------------------
COLLECTION_NAME_PATTERN = r"^[a-z0-9_-]{1,64}$"
NEEDS_ADMIN_KEY = {"model": ErrorMessage, "description": "No key, or one that matches none."}
NOT_ADMIN = {"model": ErrorMessage, "description": "Not the admin key, or no CITELINE_ADMIN_KEY configured."}


class CollectionIn(BaseModel):
    """A collection to create."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=COLLECTION_NAME_PATTERN,
        description="1-64 characters of lowercase ASCII letters, digits, '_' and '-'.",
        examples=["wire-archive"],
    )
    # strict: JSON has types, and 0 or "yes" is not a boolean
    public: bool = Field(
        default=False, strict=True, description="Anyone may read it (search, documents) without a key."
    )
    passage_tokens: int | None = Field(
        default=None, ge=16, le=512, description="Target passage size in tokens (default: CITELINE_PASSAGE_TOKENS)."
    )


class CollectionInfoOut(BaseModel):
    """A collection: its counts, model and settings."""

    name: str
    documents: int
    passages: int
    public: bool
    created: float | None = Field(description="Unix time it was created; null for `default`.")
    model: str
    passage_tokens: int
    vector_index: str = Field(description="How its sealed vector segments are searched (flat, hnsw, auto).")
    last_write: float = Field(description="When its served index last changed, Unix time.")


class CollectionList(BaseModel):
    """The collections this caller may read or write."""

    collections: list[CollectionInfoOut]


class KeyIn(BaseModel):
    """A key to create: the collections it opens and what it may do there."""

    model_config = ConfigDict(extra="forbid")

    collections: list[Annotated[str, Field(pattern=COLLECTION_NAME_PATTERN)]] = Field(min_length=1, max_length=100)
    scopes: list[Literal["read", "write"]] = Field(min_length=1, max_length=2)
    label: str = Field(default="", max_length=200, description="A note for people: whose key it is, what for.")


class KeyOut(BaseModel):
    """A key as listed: never its secret."""

    id: str
    collections: list[str]
    scopes: list[str]
    label: str
    created: float


class KeyCreated(KeyOut):
    """A new key. `key` is the whole secret: shown this once, stored only as a hash."""

    key: str = Field(description="Send as 'Authorization: Bearer <key>'.")


class KeyList(BaseModel):
    keys: list[KeyOut]


class ImportResponse(BaseModel):
    """A collection made from an archive."""

    collection: CollectionInfoOut
    reembedded: bool = Field(
        description="True when the archive's vectors came from another model and were embedded again here."
    )


class ReindexIn(BaseModel):
    """A reindex: the settings to build the collection with again, and how the result is judged."""

    model_config = ConfigDict(extra="forbid")

    passage_tokens: int | None = Field(default=None, ge=16, le=512, description="Target passage size in tokens.")
    overlap_sentences: int | None = Field(default=None, ge=0, le=5, description="Sentences repeated between passages.")
    metrics: list[Literal["ndcg@10", "recall@1", "recall@3", "recall@5", "recall@10", "recall@100", "mrr@10"]] = Field(
        default=["ndcg@10", "recall@5"], min_length=1, description="The figures that may not drop."
    )
    threshold: float = Field(default=0.005, ge=0, le=1, description="The largest drop allowed in each.")
    force: bool = Field(
        default=False, strict=True, description="Switch even when a figure drops or there are no questions."
    )
