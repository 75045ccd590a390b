"""`citeline mcp` driven by the MCP SDK's own client over stdio: the tools are listed with their schemas,
`search` answers with exact citations as structured output, `get_document` quotes a span, errors are
tool errors, never a crash."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.server import ROOT

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
            again = await client.call_tool("search", {"question": "who is the russian foreign minister", "k": 1})
            assert not again.is_error and again.structured_content["results"], "still serving after errors"

    asyncio.run(asyncio.wait_for(session(), timeout=120))
