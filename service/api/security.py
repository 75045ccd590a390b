"""Who may call what: a bearer key for writes (`CITELINE_API_KEY`) and, optionally, for reads (`CITELINE_READ_KEY`)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.dependencies import SettingsDep

bearer = HTTPBearer(
    auto_error=False,
    description="`Authorization: Bearer <key>`: CITELINE_API_KEY for writes; reads too if CITELINE_READ_KEY is set.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def key_matches(credentials: HTTPAuthorizationCredentials | None, *keys: str) -> bool:
    """True when the presented bearer key equals one of the configured `keys` (compared in constant time)."""
    if credentials is None:
        return False
    presented = credentials.credentials.encode()
    return any(hmac.compare_digest(presented, key.encode()) for key in keys if key)


async def require_write_key(settings: SettingsDep, credentials: Credentials) -> None:
    """Writes are off without CITELINE_API_KEY (403); with it, the request must carry that key (401)."""
    if not settings.api_key:
        raise HTTPException(
            status_code=403,
            detail="writes are off: start the server with CITELINE_API_KEY=<key> and send "
            "'Authorization: Bearer <key>'",
        )
    if not key_matches(credentials, settings.api_key):
        raise HTTPException(
            status_code=401,
            detail="this endpoint needs 'Authorization: Bearer <key>' with the key in CITELINE_API_KEY",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def require_read_key(settings: SettingsDep, credentials: Credentials) -> None:
    """Reads are open unless CITELINE_READ_KEY is set; then the read key (or the write key) is needed (401)."""
    if settings.read_key and not key_matches(credentials, settings.read_key, settings.api_key):
        raise HTTPException(
            status_code=401,
            detail="this endpoint needs 'Authorization: Bearer <key>' with the key in CITELINE_READ_KEY",
            headers={"WWW-Authenticate": "Bearer"},
        )
