"""HTTP checks of a running Citeline container, for docker/smoke.sh (standard library only).

smoke_check.py URL wait SECONDS             until /health answers ok
smoke_check.py URL search QUESTION DOC_ID [PAGE]
                                            DOC_ID's passage ranks first, its citation is exact (and its
                                            pages, `page` to `page_end`, include PAGE)
smoke_check.py URL documents DOC_ID...      the index holds exactly these documents
smoke_check.py URL collection ADMIN_KEY     a private collection made, written and searched with a scoped key;
                                            refused without it
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class CheckFailed(Exception):
    """The container answered, but not what Citeline must answer."""


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def wait_healthy(base: str, seconds: float) -> dict[str, Any]:
    """The /health body once it says ok; CheckFailed after `seconds`."""
    deadline = time.monotonic() + seconds
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            health: dict[str, Any] = get_json(f"{base}/health")
            if health.get("status") == "ok":
                return health
            last = json.dumps(health)
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError) as error:
            last = str(error)
        time.sleep(1)
    raise CheckFailed(f"{base}/health not ok after {seconds:.0f}s: {last}")


def check_search(base: str, question: str, doc_id: str, page: int | None = None) -> str:
    """The first result's citation, checked against the document text served by /documents/{doc_id}."""
    body = get_json(f"{base}/search?{urllib.parse.urlencode({'q': question})}")
    if not body["results"]:
        raise CheckFailed(f"no results for {question!r}")
    first = body["results"][0]
    citation = first["citation"]
    if citation["doc_id"] != doc_id:
        raise CheckFailed(f"{question!r}: first result is {citation['doc_id']}, expected {doc_id}")
    text = get_json(f"{base}/documents/{urllib.parse.quote(doc_id)}")["text"]
    if text[citation["start"] : citation["end"]] != first["text"]:
        raise CheckFailed(f"{doc_id}: text[{citation['start']}:{citation['end']}] is not the returned passage")
    pages = (citation.get("page"), citation.get("page_end"))
    if page is not None and not (pages[0] and pages[1] and pages[0] <= page <= pages[1]):
        raise CheckFailed(f"{question!r}: the passage is cited on pages {pages}, expected {page} among them")
    return f"{doc_id} [{citation['start']}:{citation['end']}] {first['text'][:70]!r}…"


def check_documents(base: str, expected: list[str]) -> str:
    served = sorted(d["doc_id"] for d in get_json(f"{base}/documents")["documents"])
    if served != sorted(expected):
        raise CheckFailed(f"documents served: {served}, expected exactly {sorted(expected)}")
    return f"documents: {served}"


def call(method: str, url: str, key: str | None = None, body: Any = None) -> tuple[int, Any]:
    """(status, JSON body) of one request; HTTP errors are answers too."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    request.add_header("Accept", "application/json, text/event-stream")  # /mcp asks for both
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def check_collection(base: str, admin: str) -> str:
    """A private collection, a key scoped to it, a write and a search with it; no key, no answer."""
    steps = [
        ("POST", "/collections", admin, {"name": "smoke"}, 201),
        ("POST", "/keys", admin, {"collections": ["smoke"], "scopes": ["read", "write"]}, 201),
    ]
    answers = []
    for method, path, key, body, expected in steps:
        status, answer = call(method, base + path, key, body)
        if status != expected:
            raise CheckFailed(f"{method} {path}: {status} {answer}, expected {expected}")
        answers.append(answer)
    scoped = answers[1]["key"]
    text = {"text": "The smoke collection's ledger lists 17 barrels of tar unloaded at dawn."}
    status, answer = call("PUT", f"{base}/collections/smoke/documents/ledger", scoped, text)
    if status != 201:
        raise CheckFailed(f"write with the scoped key: {status} {answer}")
    question = urllib.parse.urlencode({"q": "how many barrels of tar"})
    status, answer = call("GET", f"{base}/collections/smoke/search?{question}", scoped)
    if status != 200 or answer["results"][0]["citation"]["doc_id"] != "ledger":
        raise CheckFailed(f"search with the scoped key: {status} {answer}")
    status, answer = call("GET", f"{base}/collections/smoke/search?{question}")
    if status != 401:
        raise CheckFailed(f"search of a private collection without a key: {status}, expected 401")
    status, answer = call("GET", f"{base}/search?{question}&doc_id=ledger")
    if status != 200 or answer["results"]:
        raise CheckFailed(f"the default collection shows the private collection's document: {answer}")
    tool = {"name": "search", "arguments": {"question": "how many barrels of tar", "collection": "smoke"}}
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": tool}
    status, answer = call("POST", f"{base}/mcp", scoped, message)
    if status != 200 or answer["result"]["structuredContent"]["results"][0]["citation"]["doc_id"] != "ledger":
        raise CheckFailed(f"MCP search with the scoped key: {status} {answer}")
    status, answer = call("POST", f"{base}/mcp", None, message)
    if status != 200 or not answer["result"]["isError"]:
        raise CheckFailed(f"MCP search of a private collection without a key: {status} {answer}")
    return "collection: private, written and searched with a scoped key (REST and MCP), refused without"


def main(argv: list[str]) -> int:
    base, command, *rest = argv
    try:
        if command == "wait":
            print(f"healthy: {wait_healthy(base, float(rest[0]))}")
        elif command == "search":
            page = int(rest[2]) if len(rest) > 2 else None
            print(f"first result: {check_search(base, rest[0], rest[1], page)}")
        elif command == "documents":
            print(check_documents(base, rest))
        elif command == "collection":
            print(check_collection(base, rest[0]))
        elif command == "snapshot":  # the name of the snapshot being served: unchanged means nothing was rewritten
            print(get_json(f"{base}/health")["snapshot"])
        else:
            raise SystemExit(f"unknown check {command!r}")
    except (CheckFailed, urllib.error.URLError, KeyError) as error:
        print(f"smoke check failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
