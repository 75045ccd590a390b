"""`/mcp`: the MCP server (service/mcp.py) on the HTTP server, over streamable HTTP.

Stateless and JSON-answering: every POST carries its own bearer key, checked per tool call and resource read
against the collection it names, by the REST API's rules (service/api/security.py): a public collection is
open, a private one needs a key with `read` scope on it. Nothing is kept between requests, so any worker
(or a restarted server) answers any request.
"""

from __future__ import annotations

from fastapi import FastAPI
from mcp.server.mcpserver import Context
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.routing import Route

from service.api.security import identify, refusal
from service.collections import DEFAULT, Collections, UnknownCollectionError
from service.engine import Engine
from service.keys import READ
from service.mcp import CitelineMCP, ScopeError, build_server
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


def mount_mcp(app: FastAPI, settings: Settings) -> CitelineMCP:
    """Add `/mcp` to `app`; the returned server's `session_manager.run()` must be entered in the lifespan."""
    server = build_server(ServedCollections(app))
    # The SDK's guard against DNS rebinding, as it sets it for a server bound to loopback; a server bound to
    # another address is reached by names this process cannot know.
    loopback = settings.host in ("127.0.0.1", "localhost", "::1")
    security = (
        TransportSecuritySettings(
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        )
        if loopback
        else TransportSecuritySettings(enable_dns_rebinding_protection=False)
    )
    mcp_app = server.streamable_http_app(
        streamable_http_path=PATH,
        stateless_http=True,
        json_response=True,
        transport_security=security,
        max_request_body_size=settings.max_body_bytes,
    )
    (endpoint,) = [route for route in mcp_app.routes if isinstance(route, Route) and route.path == PATH]
    # POST only (GET and DELETE answer 405): stateless, there is no session to stream to or to end, and a GET
    # would hold an idle event stream open.
    app.router.routes.append(Route(PATH, endpoint.endpoint, methods=["POST"], name="mcp"))
    return server
