"""`/keys`: the admin creates keys scoped to collections, lists them (never their secrets) and revokes them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response, status

from service.api.dependencies import CollectionsDep
from service.api.schemas import BAD_INPUT, NEEDS_ADMIN_KEY, NOT_ADMIN, ErrorMessage, KeyCreated, KeyIn, KeyList, KeyOut
from service.api.security import require_admin_key
from service.collections import UnknownCollectionError
from service.keys import ApiKey, KeyStore

router = APIRouter(
    tags=["keys"],
    dependencies=[Depends(require_admin_key)],
    responses={401: NEEDS_ADMIN_KEY, 403: NOT_ADMIN, 422: BAD_INPUT},
)
KeyId = Annotated[str, Path(description="The key's id, as `GET /keys` lists it.", max_length=64)]


def key_out(key: ApiKey) -> KeyOut:
    return KeyOut(
        id=key.id, collections=list(key.collections), scopes=list(key.scopes), label=key.label, created=key.created
    )


def keys_of(request: Request) -> KeyStore:
    keys: KeyStore = request.app.state.keys  # opened whenever an admin key is configured
    return keys


@router.post(
    "/keys",
    response_model=KeyCreated,
    status_code=status.HTTP_201_CREATED,
    responses={404: {"model": ErrorMessage, "description": "A collection named in the body does not exist."}},
    summary="Create a key",
)
def create_key(body: KeyIn, request: Request, collections: CollectionsDep) -> KeyCreated:
    """A key with `scopes` (`read`, `write`) on `collections`. The answer's `key` is the only time the
    secret is shown: the server keeps its hash."""
    for name in body.collections:
        try:
            collections.get(name)
        except UnknownCollectionError:
            raise HTTPException(status_code=404, detail=f"collections: no collection is named {name!r}") from None
    key, secret = keys_of(request).create(body.collections, list(body.scopes), body.label)
    request.state.key_created = key.id  # the audit line names the key made, never its secret
    return KeyCreated(**key_out(key).model_dump(), key=secret)


@router.get("/keys", response_model=KeyList, summary="List keys")
def list_keys(request: Request) -> KeyList:
    """Every key with its collections and scopes, oldest first; never a secret."""
    return KeyList(keys=[key_out(k) for k in keys_of(request).all()])


@router.delete(
    "/keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"model": ErrorMessage, "description": "No key has this id."}},
    summary="Revoke a key",
)
def revoke_key(key_id: KeyId, request: Request) -> Response:
    """From the next request on, the key opens nothing."""
    if not keys_of(request).revoke(key_id):
        raise HTTPException(status_code=404, detail=f"no key has the id {key_id!r}: GET /keys lists them")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
