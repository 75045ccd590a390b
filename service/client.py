"""A typed Python client of Citeline's HTTP API, sync (`Client`) and async (`AsyncClient`), over httpx.

Answers are the server's own pydantic models (`service/api/schemas.py`: one definition, not a copy), and a
refusal is an `ApiError` subclass by status that carries the server's message:

    from citeline import Client
    with Client("http://127.0.0.1:8000", api_key="...") as citeline:
        best = citeline.search("how many US troops were sent").results[0]
        text = citeline.document(best.citation.doc_id).text
        assert text[best.citation.start : best.citation.end] == best.text

`client.collection("wire")` is the same client for a named collection. Every method is a request built by
one pure function (`_request`) and read by another (`_answer`); the two classes only send.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar, cast
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from service.api.schemas import (
    CollectionInfoOut,
    CollectionList,
    DocumentDetail,
    DocumentList,
    Health,
    JobList,
    JobStatus,
    KeyCreated,
    KeyList,
    SearchResponse,
    WriteResponse,
)

M = TypeVar("M", bound=BaseModel)
DEFAULT_URL = "http://127.0.0.1:8000"


class ApiError(Exception):
    """The server refused a request: `status` and its message (`detail`, as the server wrote it)."""

    def __init__(self, status: int, detail: Any, retry_after: float | None = None) -> None:
        self.status, self.detail, self.retry_after = status, detail, retry_after
        super().__init__(f"{status}: {detail}")


class BadRequest(ApiError):
    """400 or 422: the request breaks a rule; `detail` names the field and the rule."""


class Unauthorized(ApiError):
    """401: no key, or a key that matches none."""


class Forbidden(ApiError):
    """403: the key lacks the scope (or writes are off)."""


class NotFound(ApiError):
    """404: no such document, collection, job or key."""


class Conflict(ApiError):
    """409: an id or name is taken, or the collection is not in a state to do this."""


class TooLarge(ApiError):
    """413: the body is over the server's limit."""


class Unavailable(ApiError):
    """503: busy or starting; try again after `retry_after` seconds."""


class ServerError(ApiError):
    """Any other 5xx (507: the server's disk is full, nothing was written)."""


ERRORS: dict[int, type[ApiError]] = {
    400: BadRequest,
    422: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    503: Unavailable,
}


@dataclass(frozen=True)
class Request(Generic[M]):
    """One call: what to send and which model reads the answer (None: no body expected)."""

    method: str
    path: str
    model: type[M] | None = None
    params: dict[str, str] | None = None
    json: Any = None
    files: list[tuple[str, tuple[str, bytes]]] | None = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _answer(response: httpx.Response, model: type[M] | None) -> M | None:
    """The answer read into `model`, or the `ApiError` the status calls for."""
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        retry = response.headers.get("retry-after")
        kind = ERRORS.get(response.status_code, ServerError if response.status_code >= 500 else ApiError)
        raise kind(response.status_code, detail, float(retry) if retry else None)
    return None if model is None else model.model_validate_json(response.content)


def _id(value: str) -> str:
    return quote(value, safe="")


class _Calls:
    """The API's calls as `Request`s, under a collection's prefix ("" for the default collection)."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def search(self, q: str, k: int = 5, mode: str = "hybrid", **filters: Any) -> Request[SearchResponse]:
        body = {"q": q, "k": k, "mode": mode, **{name: v for name, v in filters.items() if v is not None}}
        return Request("POST", f"{self.prefix}/search", SearchResponse, json=body)

    def documents(self) -> Request[DocumentList]:
        return Request("GET", f"{self.prefix}/documents", DocumentList)

    def document(self, doc_id: str) -> Request[DocumentDetail]:
        return Request("GET", f"{self.prefix}/documents/{_id(doc_id)}", DocumentDetail)

    def add(self, documents: Sequence[Mapping[str, Any]]) -> Request[WriteResponse]:
        return Request("POST", f"{self.prefix}/documents", WriteResponse, json={"documents": list(documents)})

    def put(
        self, doc_id: str, text: str, title: str | None, metadata: Mapping[str, Any] | None
    ) -> Request[WriteResponse]:
        body = {"text": text, "title": title, "metadata": dict(metadata or {})}
        return Request("PUT", f"{self.prefix}/documents/{_id(doc_id)}", WriteResponse, json=body)

    def delete(self, doc_id: str) -> Request[Any]:
        return Request("DELETE", f"{self.prefix}/documents/{_id(doc_id)}")

    def upload(self, files: Sequence[str | Path], replace: bool, background: bool) -> Request[Any]:
        parts = [("file", (Path(f).name, Path(f).read_bytes())) for f in files]
        params = {"replace": str(replace).lower(), "background": str(background).lower()}
        model: type[BaseModel] = JobStatus if background else WriteResponse
        return Request("POST", f"{self.prefix}/documents", model, params=params, files=parts)

    def jobs(self) -> Request[JobList]:
        return Request("GET", f"{self.prefix}/jobs", JobList)

    def job(self, job_id: str) -> Request[JobStatus]:
        return Request("GET", f"{self.prefix}/jobs/{_id(job_id)}", JobStatus)

    def health(self) -> Request[Health]:
        return Request("GET", "/health", Health)

    def collections(self) -> Request[CollectionList]:
        return Request("GET", "/collections", CollectionList)

    def describe(self, name: str) -> Request[CollectionInfoOut]:
        return Request("GET", f"/collections/{_id(name)}", CollectionInfoOut)

    def create_collection(self, name: str, public: bool, passage_tokens: int | None) -> Request[CollectionInfoOut]:
        body = {"name": name, "public": public, "passage_tokens": passage_tokens}
        return Request("POST", "/collections", CollectionInfoOut, json=body)

    def delete_collection(self, name: str) -> Request[Any]:
        return Request("DELETE", f"/collections/{_id(name)}")

    def create_key(self, collections: Sequence[str], scopes: Sequence[str], label: str) -> Request[KeyCreated]:
        body = {"collections": list(collections), "scopes": list(scopes), "label": label}
        return Request("POST", "/keys", KeyCreated, json=body)

    def keys(self) -> Request[KeyList]:
        return Request("GET", "/keys", KeyList)

    def revoke_key(self, key_id: str) -> Request[Any]:
        return Request("DELETE", f"/keys/{_id(key_id)}")


def _document(text: str, doc_id: str | None, title: str | None, metadata: Mapping[str, Any] | None) -> dict:
    return {"text": text, "doc_id": doc_id, "title": title, "metadata": dict(metadata or {})}


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class Client:
    """Citeline over HTTP, one call at a time. Use as a context manager, or `close()` it."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        _http: httpx.Client | None = None,
        _prefix: str = "",
    ) -> None:
        self.http = _http or httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )
        self.calls = _Calls(_prefix)

    def collection(self, name: str) -> Client:
        """This client for the collection `name` (the same connection and key)."""
        return Client(_http=self.http, _prefix=f"/collections/{_id(name)}")

    def _send(self, request: Request[M]) -> M:
        response = self.http.request(
            request.method,
            request.path,
            params=request.params,
            json=request.json,
            files=request.files,
            content=request.content,
        )
        return cast(M, _answer(response, request.model))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def search(self, q: str, k: int = 5, mode: str = "hybrid", **filters: Any) -> SearchResponse:
        """Ranked passages for `q`; `filters`: doc_id (a list), source, filter (a dict), date_from, date_to."""
        return self._send(self.calls.search(q, k, mode, **filters))

    def documents(self) -> DocumentList:
        return self._send(self.calls.documents())

    def document(self, doc_id: str) -> DocumentDetail:
        return self._send(self.calls.document(doc_id))

    def add(
        self, text: str, doc_id: str | None = None, title: str | None = None, metadata: Mapping[str, Any] | None = None
    ) -> WriteResponse:
        """Add one new document (`Conflict` if its id exists)."""
        return self.add_many([_document(text, doc_id, title, metadata)])

    def add_many(self, documents: Sequence[Mapping[str, Any]]) -> WriteResponse:
        """Add new documents ({"text", "doc_id"?, "title"?, "metadata"?}), all or none."""
        return self._send(self.calls.add(documents))

    def put(
        self, doc_id: str, text: str, title: str | None = None, metadata: Mapping[str, Any] | None = None
    ) -> WriteResponse:
        """Create or replace the document `doc_id`."""
        return self._send(self.calls.put(doc_id, text, title, metadata))

    def delete(self, doc_id: str) -> None:
        self._send(self.calls.delete(doc_id))

    def upload(
        self, files: Sequence[str | Path], replace: bool = False, background: bool = False
    ) -> WriteResponse | JobStatus:
        """Upload files (PDF, HTML, DOCX, Markdown, text); with `background`, a job to follow with `job()`."""
        return self._send(self.calls.upload(files, replace, background))

    def jobs(self) -> JobList:
        return self._send(self.calls.jobs())

    def job(self, job_id: str) -> JobStatus:
        return self._send(self.calls.job(job_id))

    def health(self) -> Health:
        return self._send(self.calls.health())

    def collections(self) -> CollectionList:
        return self._send(self.calls.collections())

    def describe(self, name: str) -> CollectionInfoOut:
        return self._send(self.calls.describe(name))

    def create_collection(
        self, name: str, public: bool = False, passage_tokens: int | None = None
    ) -> CollectionInfoOut:
        return self._send(self.calls.create_collection(name, public, passage_tokens))

    def delete_collection(self, name: str) -> None:
        self._send(self.calls.delete_collection(name))

    def create_key(self, collections: Sequence[str], scopes: Sequence[str], label: str = "") -> KeyCreated:
        return self._send(self.calls.create_key(collections, scopes, label))

    def keys(self) -> KeyList:
        return self._send(self.calls.keys())

    def revoke_key(self, key_id: str) -> None:
        self._send(self.calls.revoke_key(key_id))


class AsyncClient:
    """The same calls as `Client`, awaited. Use with `async with`, or `await aclose()`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        _http: httpx.AsyncClient | None = None,
        _prefix: str = "",
    ) -> None:
        self.http = _http or httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )
        self.calls = _Calls(_prefix)

    def collection(self, name: str) -> AsyncClient:
        return AsyncClient(_http=self.http, _prefix=f"/collections/{_id(name)}")

    async def _send(self, request: Request[M]) -> M:
        response = await self.http.request(
            request.method,
            request.path,
            params=request.params,
            json=request.json,
            files=request.files,
            content=request.content,
        )
        return cast(M, _answer(response, request.model))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def search(self, q: str, k: int = 5, mode: str = "hybrid", **filters: Any) -> SearchResponse:
        return await self._send(self.calls.search(q, k, mode, **filters))

    async def documents(self) -> DocumentList:
        return await self._send(self.calls.documents())

    async def document(self, doc_id: str) -> DocumentDetail:
        return await self._send(self.calls.document(doc_id))

    async def add(
        self, text: str, doc_id: str | None = None, title: str | None = None, metadata: Mapping[str, Any] | None = None
    ) -> WriteResponse:
        return await self.add_many([_document(text, doc_id, title, metadata)])

    async def add_many(self, documents: Sequence[Mapping[str, Any]]) -> WriteResponse:
        return await self._send(self.calls.add(documents))

    async def put(
        self, doc_id: str, text: str, title: str | None = None, metadata: Mapping[str, Any] | None = None
    ) -> WriteResponse:
        return await self._send(self.calls.put(doc_id, text, title, metadata))

    async def delete(self, doc_id: str) -> None:
        await self._send(self.calls.delete(doc_id))

    async def jobs(self) -> JobList:
        return await self._send(self.calls.jobs())

    async def job(self, job_id: str) -> JobStatus:
        return await self._send(self.calls.job(job_id))

    async def health(self) -> Health:
        return await self._send(self.calls.health())

    async def upload(
        self, files: Sequence[str | Path], replace: bool = False, background: bool = False
    ) -> WriteResponse | JobStatus:
        return await self._send(self.calls.upload(files, replace, background))

    async def collections(self) -> CollectionList:
        return await self._send(self.calls.collections())

    async def describe(self, name: str) -> CollectionInfoOut:
        return await self._send(self.calls.describe(name))

    async def create_collection(
        self, name: str, public: bool = False, passage_tokens: int | None = None
    ) -> CollectionInfoOut:
        return await self._send(self.calls.create_collection(name, public, passage_tokens))

    async def delete_collection(self, name: str) -> None:
        await self._send(self.calls.delete_collection(name))

    async def create_key(self, collections: Sequence[str], scopes: Sequence[str], label: str = "") -> KeyCreated:
        return await self._send(self.calls.create_key(collections, scopes, label))

    async def keys(self) -> KeyList:
        return await self._send(self.calls.keys())

    async def revoke_key(self, key_id: str) -> None:
        await self._send(self.calls.revoke_key(key_id))
