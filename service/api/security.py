"""Who may call what, per collection.

A request's bearer key names its caller: the admin key (`CITELINE_ADMIN_KEY`: everything), a key the admin
created (its scopes on its collections), or the keys of the single-collection days, which keep working on
the `default` collection (`CITELINE_API_KEY` reads and writes it, `CITELINE_READ_KEY` reads it). Reads of a
public collection need no key; a private one needs `read` scope. 401: no key, or one that matches none;
403: a known key without the scope (the message names the scope and the collection).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.collections import DEFAULT, Collections, Live
from service.keys import READ, WRITE, ApiKey, KeyStore
from service.settings import Settings

bearer = HTTPBearer(
    auto_error=False,
    description="`Authorization: Bearer <key>`: a key with `read` or `write` scope on the collection, the admin "
    "key, or for the default collection CITELINE_API_KEY (writes) and CITELINE_READ_KEY (reads, when set).",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
ADMIN = "admin"


@dataclass(frozen=True)
class Caller:
    """Who sent a request: `id` names them in the audit log (never the secret): "admin", "api-key",
    "read-key", a key's id, "unknown" (a key that matches none) or "anonymous"."""

    id: str
    admin: bool = False
    key: ApiKey | None = None
    default_scopes: tuple[str, ...] = ()  # CITELINE_API_KEY / CITELINE_READ_KEY on the default collection

    @property
    def known(self) -> bool:
        return self.id not in ("anonymous", "unknown")

    def may(self, collection: str, scope: str) -> bool:
        if self.admin:
            return True
        if collection == DEFAULT and scope in self.default_scopes:
            return True
        return self.key is not None and self.key.allows(collection, scope)


ANONYMOUS = Caller("anonymous")


def key_matches(presented: str, *keys: str) -> bool:
    """True when `presented` equals one of the configured `keys` (compared in constant time)."""
    return any(hmac.compare_digest(presented.encode(), key.encode()) for key in keys if key)


def identify(settings: Settings, admin_key: str, keys: KeyStore | None, presented: str | None) -> Caller:
    """The caller a bearer key names."""
    if not presented:
        return ANONYMOUS
    if key_matches(presented, admin_key):
        return Caller(ADMIN, admin=True)
    if key_matches(presented, settings.api_key):
        return Caller("api-key", default_scopes=(READ, WRITE))
    if key_matches(presented, settings.read_key):
        return Caller("read-key", default_scopes=(READ,))
    found = keys.find(presented) if keys is not None else None
    return Caller(found.id, key=found) if found is not None else Caller("unknown")


def caller_of(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    """The request's caller, identified once and kept on the request (the audit line reads it)."""
    known: Caller | None = getattr(request.state, "caller", None)
    if known is None:
        state = request.app.state
        known = identify(state.settings, state.admin_key, state.keys, credentials.credentials if credentials else None)
        request.state.caller = known
    return known


def collection_of(request: Request) -> Live:
    """The collection a request is about: the path's `{name}`, else `default` (404 when there is none)."""
    collections: Collections | None = getattr(request.app.state, "collections", None)
    if collections is None:
        raise HTTPException(status_code=503, detail="the server is starting: retry shortly")
    live = collections.get(request.path_params.get("name", DEFAULT))
    request.state.collection = live.name
    return live


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def refusal(caller: Caller, scope: str, collection: str) -> HTTPException:
    if caller.id == "unknown":
        return _unauthorized("the bearer key sent matches no key of this server (revoked, or mistyped)")
    if not caller.known:
        hint = " (or CITELINE_READ_KEY)" if collection == DEFAULT and scope == READ else ""
        hint = " (or CITELINE_API_KEY)" if collection == DEFAULT and scope == WRITE else hint
        return _unauthorized(
            f"collection {collection!r} needs 'Authorization: Bearer <key>' with a key that has the "
            f"{scope!r} scope on it{hint}"
        )
    return HTTPException(status_code=403, detail=f"this key lacks the {scope!r} scope on collection {collection!r}")


async def require_read_key(request: Request, credentials: Credentials) -> None:
    """Reads: open on a public collection; on a private one, a key with `read` scope on it."""
    live = collection_of(request)
    if live.info.public:  # no key to look up on the hot path of open reads
        return
    caller = caller_of(request, credentials)
    if not caller.may(live.name, READ):
        raise refusal(caller, READ, live.name)


async def require_write_key(request: Request, credentials: Credentials) -> None:
    """Writes: a key with `write` scope on the collection. With no key configured at all, writes are off (403)."""
    live = collection_of(request)
    caller = caller_of(request, credentials)
    if caller.may(live.name, WRITE):
        return
    state = request.app.state
    if not caller.known and not (state.settings.api_key or state.admin_key or (state.keys and state.keys.all())):
        raise HTTPException(
            status_code=403,
            detail="writes are off: start the server with CITELINE_API_KEY=<key> (or CITELINE_ADMIN_KEY to create "
            "scoped keys) and send 'Authorization: Bearer <key>'",
        )
    raise refusal(caller, WRITE, live.name)


async def require_admin_key(request: Request, credentials: Credentials) -> None:
    """Collections and keys are managed with the admin key; without one configured, not at all (403)."""
    if not request.app.state.admin_key:
        raise HTTPException(
            status_code=403,
            detail="collections and keys are managed with the admin key: start the server with "
            "CITELINE_ADMIN_KEY=<key> (or CITELINE_ADMIN_KEY_FILE=<file>)",
        )
    caller = caller_of(request, credentials)
    if caller.admin:
        return
    if caller.known:
        raise HTTPException(status_code=403, detail="this endpoint needs the admin key (CITELINE_ADMIN_KEY)")
    raise _unauthorized("this endpoint needs 'Authorization: Bearer <key>' with the admin key (CITELINE_ADMIN_KEY)")
