"""Request limits: the size of a request body (413) and how long a request may run (503, Retry-After)."""

from __future__ import annotations

import asyncio
import json
import logging
import re

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 2
# Probes and scrapes must answer even when searches are slow.
UNTIMED_PATHS = frozenset({"/health", "/ready", "/metrics"})


async def send_json(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """Answer `{"detail": ...}` with `status` directly on the ASGI channel."""
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _too_large(limit: int, setting: str) -> str:
    return f"request body is larger than {limit} bytes ({setting}): send fewer or smaller documents"


def is_multipart(scope: Scope) -> bool:
    """A request whose body is `multipart/form-data` (a file upload)."""
    content_type = dict(scope.get("headers") or []).get(b"content-type", b"")
    return content_type.split(b";", 1)[0].strip().lower() == b"multipart/form-data"


class BodySizeLimit:
    """ASGI middleware: a body over `max_bytes` (a file upload: `max_upload_bytes`) is a 413, by its declared
    length or as it streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_upload_bytes: int = 0, max_import_bytes: int = 0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_upload_bytes = max_upload_bytes or max_bytes
        self.max_import_bytes = max_import_bytes or max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if is_import(scope):
            limit, setting = self.max_import_bytes, "CITELINE_MAX_IMPORT_BYTES"
        elif is_multipart(scope):
            limit, setting = self.max_upload_bytes, "CITELINE_MAX_UPLOAD_BYTES"
        else:
            limit, setting = self.max_bytes, "CITELINE_MAX_BODY_BYTES"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_json(send, 413, _too_large(limit, setting))
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # An HTTPException passes through FastAPI's body parsing and becomes the response.
                    raise HTTPException(status_code=413, detail=_too_large(limit, setting))
            return message

        await self.app(scope, limited_receive, send)


# Paths whose POST/PUT/DELETE change stored data: a collection's documents, collections themselves.
WRITE_PATHS = re.compile(
    r"(?:/collections/[^/]+)?/(?:documents(?:/.*)?|eval|reindex|rollback)|/collections(?:/[^/]+(?:/import)?)?"
)
# Paths that take as long as the collection is large, whatever the method: exports and imports.
LONG_PATHS = re.compile(r"(?:/collections/[^/]+)?/export|/collections/[^/]+/import")


def is_import(scope: Scope) -> bool:
    """An archive sent to `POST /collections/{name}/import`: bounded by CITELINE_MAX_IMPORT_BYTES."""
    path = str(scope["path"])
    return scope["method"] == "POST" and path.endswith("/import") and LONG_PATHS.fullmatch(path) is not None


def is_write(scope: Scope) -> bool:
    """A request that changes documents or collections: bounded by the engine's wait for its turn, not by the
    timeout (a write that has started is answered with its outcome)."""
    return scope["method"] in ("POST", "PUT", "DELETE") and WRITE_PATHS.fullmatch(str(scope["path"])) is not None


def is_untimed(scope: Scope) -> bool:
    """Requests the timeout leaves alone: probes, writes that have started, exports and imports."""
    return scope["path"] in UNTIMED_PATHS or is_write(scope) or LONG_PATHS.fullmatch(str(scope["path"])) is not None


class RequestTimeout:
    """ASGI middleware: a request still running after `seconds` is answered 503 with Retry-After.

    The endpoints run in worker threads, which cannot be interrupted: the work goes on and its late
    response is dropped, so a search just finishes unseen. Writes are not timed here: a write that has
    started is stored whole and answered (never a 503 for a write that then lands), and one still waiting
    for its turn gives up after the same number of seconds with nothing written (`Engine`). A timer on the
    loop sends the 503, so a request that finishes in time costs no extra task.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds
        self._answering: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.seconds <= 0 or is_untimed(scope):
            await self.app(scope, receive, send)
            return
        started = False
        answered = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the client has had its 503
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        def time_out() -> None:
            nonlocal answered
            if started:  # already streaming its response: let it end
                return
            answered = True
            detail = f"the request took longer than {self.seconds:g} s (CITELINE_REQUEST_TIMEOUT_SECONDS); try again"
            task = asyncio.ensure_future(send_json(send, 503, detail, {"Retry-After": str(RETRY_AFTER_SECONDS)}))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)

        timer = asyncio.get_running_loop().call_later(self.seconds, time_out)
        try:
            await self.app(scope, receive, guarded_send)
        except Exception:
            if not answered:
                raise
            logger.error("a request answered 503 after its timeout failed later", exc_info=True)
        finally:
            timer.cancel()
