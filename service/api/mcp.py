"""`/mcp`: the MCP server (service/mcp.py) on the HTTP server, over streamable HTTP.

Stateless and JSON-answering: every POST carries its own bearer key, checked per tool call and resource read
against the collection it names, by the REST API's rules (service/api/security.py): a public collection is
open, a private one needs a key with `read` scope on it. Nothing is kept between requests, so any worker
(or a restarted server) answers any request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from mcp.server.mcpserver import Context
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from service.api.security import identify, refusal
from service.collections import DEFAULT, Collections, UnknownCollectionError
from service.engine import Engine
from service.keys import READ
from service.mcp import ScopeError, build_server
from service.settings import Settings

PATH = "/mcp"


class ServedCollections:
    """The server's collections, as far as the key of the HTTP request behind an MCP message reaches."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def _collections(self) -> Collections:
        collections: Collections | None = getattr(self.app.state, "collections", None)
        if collections is None:
            raise ScopeError("the server is starting: retry shortly")
        return collections

    def _presented(self, context: Context) -> str | None:
        request = context.request_context.request
        header = request.headers.get("authorization", "") if isinstance(request, Request) else ""
        scheme, _, key = header.partition(" ")
        return key.strip() if scheme.lower() == "bearer" and key.strip() else None

    def _may_read(self, context: Context, name: str, public: bool) -> str | None:
        """None when the request may read collection `name`, else why not."""
        if public:
            return None
        state = self.app.state
        caller = identify(state.settings, state.admin_key, state.keys, self._presented(context))
        return None if caller.may(name, READ) else refusal(caller, READ, name).detail

    def engine(self, context: Context, collection: str | None) -> Engine:
        try:
            live = self._collections().get(collection or DEFAULT)
        except UnknownCollectionError as error:
            raise ScopeError(str(error)) from None
        why = self._may_read(context, live.name, live.info.public)
        if why is not None:
            raise ScopeError(why)
        return live.engine

    def readable(self, context: Context) -> list[tuple[str, Engine]]:
        return [
            (live.name, live.engine)
            for live in self._collections().all()
            if self._may_read(context, live.name, live.info.public) is None
        ]


class MCPEndpoint:
    """The ASGI endpoint of `/mcp`. The SDK's session manager runs once per instance and an app may be started
    more than once (tests do), so each start makes a fresh one (`running`)."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self.server = build_server(ServedCollections(app))
        # The SDK's guard against DNS rebinding, as it sets it for a server bound to loopback; a server bound
        # to another address is reached by names this process cannot know.
        loopback = settings.host in ("127.0.0.1", "localhost", "::1")
        self.security = (
            TransportSecuritySettings(
                allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
                allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
            )
            if loopback
            else TransportSecuritySettings(enable_dns_rebinding_protection=False)
        )
        self.max_body_bytes = settings.max_body_bytes
        self.manager: StreamableHTTPSessionManager | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        manager = StreamableHTTPSessionManager(
            app=self.server._lowlevel_server,  # what the SDK's own streamable_http_app() hands it
            json_response=True,
            stateless=True,
            security_settings=self.security,
            max_request_body_size=self.max_body_bytes,
        )
        async with manager.run():
            self.manager = manager
            try:
                yield
            finally:
                self.manager = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.manager is None:
            response = JSONResponse({"detail": "the server is starting: retry shortly"}, status_code=503)
            await response(scope, receive, send)
            return
        await self.manager.handle_request(scope, receive, send)


def mount_mcp(app: FastAPI, settings: Settings) -> MCPEndpoint:
    """Add `/mcp` to `app`; the returned endpoint's `running()` must be entered in the app's lifespan."""
    endpoint = MCPEndpoint(app, settings)
    # POST only (GET and DELETE answer 405): stateless, there is no session to stream to or to end, and a GET
    # would hold an idle event stream open.
    app.router.routes.append(Route(PATH, endpoint, methods=["POST"], name="mcp"))
    return endpoint
