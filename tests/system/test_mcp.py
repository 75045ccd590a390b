"""The MCP server driven by the SDK's own client, over stdio (`citeline mcp`) and over streamable HTTP (`/mcp`
of a real `citeline serve`): the tools are listed with their schemas, `search` answers with exact citations
as structured output, `get_document` quotes a span, documents are resources, errors are tool errors, never a
crash; over HTTP a private collection needs a key with `read` scope, as on the REST API; malformed messages
are never answered with a 5xx."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import httpx2
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from indexer.model.embedding import Embedder
from service.api.app import create_app
from service.engine import Engine
from service.settings import Settings
from tests.copies import copy_index
from tests.server import ROOT, server_process

TROOPS = "001_2c0b17beeba9964b"


def test_an_agent_searches_and_quotes_over_stdio(seed_index: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CITELINE_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"}
    server = StdioServerParameters(
        command=sys.executable, args=["-m", "service.cli", "mcp", "--index", str(seed_index)], env=env
    )

    async def session() -> None:
        async with stdio_client(server) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(tools) == {"search", "get_document"}
            assert "citation" in (tools["search"].description or "") and tools["search"].output_schema
            found = await client.call_tool("search", {"question": "how many US troops were sent", "k": 3})
            assert not found.is_error, found
            best = found.structured_content["results"][0]
            citation = best["citation"]
            assert citation["doc_id"] == TROOPS and "200 additional US forces" in best["text"]
            span = {"doc_id": TROOPS, "start": citation["start"], "end": citation["end"]}
            quoted = await client.call_tool("get_document", span)
            assert quoted.structured_content["text"] == best["text"], "the citation's span is the passage"
            whole = (await client.call_tool("get_document", {"doc_id": TROOPS})).structured_content
            assert whole["text"][citation["start"] : citation["end"]] == best["text"]
            for bad in ({"doc_id": "no-such-doc"}, {"doc_id": TROOPS, "start": 5, "end": 2}):
                refused = await client.call_tool("get_document", bad)
                assert refused.is_error, bad
            empty = await client.call_tool("search", {"question": "   "})
            assert empty.is_error
            other = await client.call_tool("search", {"question": "troops", "collection": "wire"})
            assert other.is_error and "serves collection 'default' only" in other.content[0].text
            listed = (await client.list_resources()).resources
            assert len(listed) == 5 and listed[1].uri == f"citeline://default/documents/{TROOPS}"
            read = (await client.read_resource(str(listed[1].uri))).contents[0]
            assert read.text == whole["text"]
            again = await client.call_tool("search", {"question": "who is the russian foreign minister", "k": 1})
            assert not again.is_error and again.structured_content["results"], "still serving after errors"

    asyncio.run(asyncio.wait_for(session(), timeout=120))


ADMIN = "mcp-admin"
SEARCH_TROOPS = {"question": "how many US troops were sent", "k": 3}


def test_an_agent_searches_over_http_with_the_rest_apis_keys(seed_index: Path, tmp_path: Path) -> None:
    index = copy_index(seed_index, tmp_path / "index")
    with server_process("--index", str(index), env={"CITELINE_ADMIN_KEY": ADMIN}) as (url, _):
        admin = {"Authorization": f"Bearer {ADMIN}"}
        assert httpx.post(f"{url}/collections", json={"name": "wire"}, headers=admin).status_code == 201
        put = httpx.put(f"{url}/collections/wire/documents/ap-1", json={"text": DAM}, headers=admin, timeout=60)
        assert put.status_code in (200, 201), put.text
        made = httpx.post(f"{url}/keys", json={"collections": ["wire"], "scopes": ["read"]}, headers=admin)
        reader = made.json()["key"]

        async def session(key: str | None) -> dict[str, object]:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=60) as http,
                streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
                ClientSession(read, write) as client,
            ):
                await client.initialize()
                tools = {tool.name: tool for tool in (await client.list_tools()).tools}
                found = await client.call_tool("search", SEARCH_TROOPS)
                best = found.structured_content["results"][0]
                span = {"doc_id": TROOPS, "start": best["citation"]["start"], "end": best["citation"]["end"]}
                quoted = (await client.call_tool("get_document", span)).structured_content["text"]
                wire = await client.call_tool("search", {"question": "which dam", "k": 1, "collection": "wire"})
                uris = [str(r.uri) for r in (await client.list_resources()).resources]
                try:
                    dam = (await client.read_resource("citeline://wire/documents/ap-1")).contents[0].text
                except MCPError as error:
                    dam = f"refused: {error}"
                unknown = await client.call_tool("search", {"question": "dam", "collection": "no-such"})
                seen = {"tools": set(tools), "best": best, "quoted": quoted, "wire": wire, "uris": uris}
                return seen | {"dam": dam, "unknown": unknown}

        for key in (None, reader, ADMIN):
            seen = asyncio.run(asyncio.wait_for(session(key), timeout=120))
            assert seen["tools"] == {"search", "get_document"}
            best = seen["best"]
            assert best["citation"]["doc_id"] == TROOPS and "200 additional US forces" in best["text"]
            assert seen["quoted"] == best["text"], "the citation's span is the passage"
            unknown = seen["unknown"]
            assert unknown.is_error and "no-such" in unknown.content[0].text
            wire = seen["wire"]
            default_uris = [u for u in seen["uris"] if u.startswith("citeline://default/")]
            assert len(default_uris) == 5, "the default collection is public"
            if key is None:
                assert wire.is_error and "'read' scope" in wire.content[0].text and "'wire'" in wire.content[0].text
                assert "citeline://wire/documents/ap-1" not in seen["uris"]
                assert str(seen["dam"]).startswith("refused") and "read" in str(seen["dam"])
            else:
                assert not wire.is_error and wire.structured_content["results"][0]["citation"]["doc_id"] == "ap-1"
                assert "citeline://wire/documents/ap-1" in seen["uris"] and seen["dam"] == DAM
        wrong = asyncio.run(asyncio.wait_for(session("cl_nothing_wrong"), timeout=120))
        assert wrong["wire"].is_error and "matches no key" in wrong["wire"].content[0].text


DAM = "Fighters reached the Tabqa dam on Friday, the last crossing of the Euphrates held by the group."
MESSAGE = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search"}}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
methods = st.sampled_from(
    ["initialize", "tools/list", "tools/call", "resources/list", "resources/read", "ping", "prompts/get", "nope"]
)
tool_arguments = st.fixed_dictionaries(
    {},
    optional={
        "question": st.text(max_size=60) | json_values,
        "k": st.integers(-5, 200) | json_values,
        "mode": st.sampled_from(["hybrid", "dense", "bm25", "x"]) | json_values,
        "collection": st.sampled_from(["default", "wire", "../x", ""]) | json_values,
        "doc_id": st.sampled_from([TROOPS, "nope", "..", ""]) | json_values,
        "start": st.integers(-10, 10_000) | json_values,
        "end": st.integers(-10, 10_000) | json_values,
        "doc_ids": json_values,
        "metadata": json_values,
        "date_from": st.sampled_from(["2017-01-01", "2017-13-45", "x"]) | json_values,
    },
)
params = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["search", "get_document", "other"]) | json_values,
        "arguments": tool_arguments | json_values,
        "uri": st.sampled_from([f"citeline://default/documents/{TROOPS}", "citeline://wire/documents/%2e%2e", "x:"])
        | json_values,
        "cursor": st.sampled_from(["0", "500", "-1", "x", ""]) | json_values,
        "protocolVersion": st.sampled_from(["2025-06-18", "1999-01-01"]) | json_values,
    },
)
messages = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0") | json_values, "method": methods | json_values},
    optional={"id": st.integers() | st.text(max_size=8) | json_values, "params": params | json_values},
)
bodies = (
    messages.map(lambda m: json.dumps(m).encode())
    | st.lists(messages, max_size=3).map(lambda m: json.dumps(m).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=200)
)


@pytest.fixture(scope="module")
def mcp_http(embedder: Embedder, seed_index: Path) -> Iterator[TestClient]:
    # Host 127.0.0.1: the endpoint's guard against DNS rebinding refuses other names on a loopback server.
    app = create_app(Settings(index=seed_index, admin_key=ADMIN), Engine.load(Settings(index=seed_index), embedder))
    with TestClient(app, base_url="http://127.0.0.1:8000", raise_server_exceptions=False) as client:
        yield client


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, key=st.sampled_from([None, ADMIN, "wrong"]), content_type=st.sampled_from(["json", "text", None]))
def test_the_mcp_endpoint_never_answers_5xx(
    mcp_http: TestClient, body: bytes, key: str | None, content_type: str | None
) -> None:
    headers = {"Accept": HEADERS["Accept"]}
    if content_type is not None:
        headers["Content-Type"] = "application/json" if content_type == "json" else "text/plain"
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    answer = mcp_http.post("/mcp", content=body, headers=headers)
    assert answer.status_code < 500, (body, answer.status_code, answer.text)


def test_the_mcp_endpoint_answers_after_the_fuzz(mcp_http: TestClient) -> None:
    call = {**MESSAGE, "params": {"name": "search", "arguments": SEARCH_TROOPS}}
    answer = mcp_http.post("/mcp", json=call, headers=HEADERS)
    assert answer.status_code == 200 and not answer.json()["result"]["isError"]
    assert answer.json()["result"]["structuredContent"]["results"][0]["citation"]["doc_id"] == TROOPS
    assert mcp_http.get("/mcp").status_code == 405, "stateless: no event stream to open"
    assert mcp_http.post("/mcp", json=call, headers={**HEADERS, "Host": "evil.example"}).status_code == 421
