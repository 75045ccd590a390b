"""`import citeline`: the typed Python client of a Citeline server (service/client.py)."""

from service.client import (
    ApiError,
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    NotFound,
    ServerError,
    TooLarge,
    Unauthorized,
    Unavailable,
)

__all__ = [
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "Forbidden",
    "NotFound",
    "ServerError",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
]
