"""The Python client (`import citeline`) against a real `citeline serve`: every method, each error type
carrying the server's message, the async variant, and a collection's own client."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

import citeline
from service.api.schemas import JobStatus, SearchResponse, WriteResponse
from service.client import _answer
from tests.copies import copy_index
from tests.server import server_process

ADMIN = "client-admin"
TROOPS = "001_2c0b17beeba9964b"


def test_every_call_and_every_refusal_against_a_real_server(seed_index: Path, tmp_path: Path) -> None:
    index = copy_index(seed_index, tmp_path / "index")
    env = {"CITELINE_ADMIN_KEY": ADMIN, "CITELINE_API_KEY": "writer", "CITELINE_MAX_BODY_BYTES": "200000"}
    with server_process("--index", str(index), env=env) as (url, _):
        with citeline.Client(url) as anonymous, citeline.Client(url, api_key=ADMIN) as admin:
            found = anonymous.search("how many US troops were sent", k=3)
            assert isinstance(found, SearchResponse) and found.results[0].citation.doc_id == TROOPS
            best = found.results[0]
            text = anonymous.document(TROOPS).text
            assert text[best.citation.start : best.citation.end] == best.text
            assert anonymous.search("troops", doc_id=["no-such-doc"]).results == []
            assert len(anonymous.documents().documents) == 5 and anonymous.health().documents == 5
            with pytest.raises(citeline.BadRequest, match="k"):
                anonymous.search("troops", k=0)
            with pytest.raises(citeline.NotFound):
                anonymous.document("no-such-doc")
            with pytest.raises(citeline.Unauthorized):
                anonymous.add("A note.")

            written = admin.add("The ferry leaves at seven.", doc_id="ferry", title="Ferry")
            assert isinstance(written, WriteResponse) and written.documents[0].created
            with pytest.raises(citeline.Conflict, match="ferry"):
                admin.add("Again.", doc_id="ferry")
            assert admin.put("ferry", "The ferry leaves at eight.").documents[0].created is False
            assert admin.add_many([{"text": "One."}, {"text": "Two.", "doc_id": "two"}]).documents[1].doc_id == "two"
            with pytest.raises(citeline.TooLarge):
                admin.add("x" * 300_000)
            note = tmp_path / "note.md"
            note.write_text("# Note\n\nThe harbour closed for nine days.", encoding="utf-8")
            uploaded = admin.upload([note])
            assert isinstance(uploaded, WriteResponse) and uploaded.documents[0].doc_id == "note"
            job = admin.upload([note], replace=True, background=True)
            assert isinstance(job, JobStatus) and job.kind == "upload"
            deadline = time.monotonic() + 60
            while admin.job(job.id).state not in ("done", "failed") and time.monotonic() < deadline:
                time.sleep(0.1)
            assert admin.job(job.id).state == "done" and [j.id for j in admin.jobs().jobs] == [job.id]
            admin.delete("ferry")
            with pytest.raises(citeline.NotFound):
                admin.delete("ferry")

            made = admin.create_collection("wire")
            assert made.name == "wire" and not made.public
            key = admin.create_key(["wire"], ["read", "write"], label="test")
            assert [k.id for k in admin.keys().keys] == [key.id]
            with citeline.Client(url, api_key=key.key) as scoped:
                wire = scoped.collection("wire")
                wire.put("ap-1", "Fighters reached the Tabqa dam on Friday.")
                assert wire.search("who reached the dam").results[0].citation.doc_id == "ap-1"
                assert [c.name for c in scoped.collections().collections] == ["default", "wire"]
                assert scoped.describe("wire").documents == 1
                with pytest.raises(citeline.Forbidden, match="admin key"):
                    scoped.create_collection("other")
                with pytest.raises(citeline.Forbidden, match="'write' scope"):
                    scoped.put("x", "Not here.")
            with pytest.raises(citeline.Unauthorized, match="collection 'wire'"):
                anonymous.collection("wire").search("dam")
            with pytest.raises(citeline.NotFound):
                anonymous.collection("nope").documents()
            admin.revoke_key(key.id)
            with citeline.Client(url, api_key=key.key) as revoked, pytest.raises(citeline.Unauthorized):
                revoked.collection("wire").documents()
            admin.delete_collection("wire")
            assert [c.name for c in admin.collections().collections] == ["default"]

        async def asynchronously() -> None:
            async with citeline.AsyncClient(url, api_key=ADMIN) as client:
                found = await client.search("how many US troops were sent")
                assert found.results[0].citation.doc_id == TROOPS
                assert (await client.put("async", "Written from asyncio.")).documents[0].created
                assert (await client.document("async")).text == "Written from asyncio."
                await client.delete("async")
                with pytest.raises(citeline.NotFound):
                    await client.document("async")
                assert (await client.health()).status == "ok" and (await client.jobs()).jobs
                made = await client.create_collection("async-wire", public=True)
                assert made.public and (await client.describe("async-wire")).documents == 0
                key = await client.create_key(["async-wire"], ["write"])
                assert [k.id for k in (await client.keys()).keys] == [key.id]
                async with citeline.AsyncClient(url, api_key=key.key) as scoped:
                    wire = scoped.collection("async-wire")
                    await wire.put("a", "Written to a named collection from asyncio.")
                    assert (await wire.search("named collection asyncio")).results[0].citation.doc_id == "a"
                await client.revoke_key(key.id)
                await client.delete_collection("async-wire")
                assert [c.name for c in (await client.collections()).collections] == ["default"]
                note = tmp_path / "async.txt"
                note.write_text("Uploaded from asyncio.", encoding="utf-8")
                assert (await client.upload([note])).documents[0].doc_id == "async"  # type: ignore[union-attr]

        asyncio.run(asynchronously())


@pytest.mark.parametrize(
    ("status", "kind"),
    [(503, citeline.Unavailable), (507, citeline.ServerError), (500, citeline.ServerError), (418, citeline.ApiError)],
)
def test_statuses_the_server_rarely_gives_are_typed_too(status: int, kind: type[citeline.ApiError]) -> None:
    """A busy server (503 with Retry-After) and a full disk (507) cannot be made on demand here."""
    response = httpx.Response(status, json={"detail": "busy: try again"}, headers={"Retry-After": "2"})
    with pytest.raises(kind) as raised:
        _answer(response, None)
    assert type(raised.value) is kind and raised.value.detail == "busy: try again" and raised.value.retry_after == 2
