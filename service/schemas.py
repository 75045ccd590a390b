"""Request and response models of the HTTP API; their docstrings and examples become the OpenAPI docs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.retrieval import Mode

MAX_QUERY_CHARS = 1000


class SearchRequest(BaseModel):
    """A question and how many passages to return, ranked how."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"q": "how many US troops were sent", "k": 5, "mode": "hybrid"}]},
    )

    q: str = Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description="The question, 1 to 1000 characters, not only whitespace.",
        examples=["how many US troops were sent"],
    )
    k: int = Field(default=5, ge=1, le=100, description="Number of passages to return, 1 to 100.")
    mode: Mode = Field(
        default=Mode.hybrid,
        description="`hybrid` (dense + BM25: normalised scores, equally weighted), `dense` or `bm25`.",
    )

    @field_validator("q")
    @classmethod
    def q_has_content(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("q must contain at least one non-whitespace character")
        return value


class Citation(BaseModel):
    """Where a passage comes from: `GET /documents/{doc_id}` text`[start:end]` equals the passage text."""

    doc_id: str = Field(examples=["001_2c0b17beeba9964b"])
    title: str | None = Field(default=None, examples=["US sends more troops to crush IS"])
    source: str = Field(examples=["seeds/001_2c0b17beeba9964b.txt"])
    start: int = Field(description="Start offset (Python string index) in the document's original text.")
    end: int = Field(description="End offset (exclusive) in the document's original text.")


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


class SearchResponse(BaseModel):
    """Ranked passages for a question."""

    query: str
    mode: Mode
    took_ms: float
    results: list[SearchResult]


class DocumentSummary(BaseModel):
    """A document of the index."""

    doc_id: str
    title: str | None
    source: str
    length: int = Field(description="Length of the original text in characters.")
    chunks: int = Field(description="Number of passages indexed from it.")


class DocumentList(BaseModel):
    """All documents of the index."""

    documents: list[DocumentSummary]


class DocumentDetail(DocumentSummary):
    """A document with its full original text, against which citations are checked."""

    text: str
    metadata: dict[str, object] = Field(default_factory=dict)


class Health(BaseModel):
    """Service status and what it serves."""

    status: str = Field(examples=["ok"])
    documents: int
    chunks: int
    model: str
    snapshot: str = Field(description="Name of the loaded index snapshot.")


class ErrorMessage(BaseModel):
    """An error with a message that says what is wrong and what to do."""

    detail: str
