"""API fuzzing: schemathesis generates requests from the app's own OpenAPI schema, valid and invalid.

Every operation of the schema with the admin key (which opens every collection and manages them), and the
operations of collections and keys also without a key, over the in-process ASGI transport. Checks: no 5xx,
and status codes, content types, headers and bodies as the schema declares them. A request that ran past the
fuzz app's own timeout would be a 503, so a hang fails too. `CITELINE_FUZZ_SCALE` multiplies the examples
per operation (`make fuzz` runs 4x).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from indexer.collection import derive_doc_id
from indexer.model.embedding import Embedder
from service.api.app import create_app
from service.engine import Engine
from service.settings import Settings
from tests.copies import copy_index

KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SCALE = float(os.environ.get("CITELINE_FUZZ_SCALE", "1"))
# Examples per operation (positive, negative): searches are cheap, writes cost an index snapshot each.
# Any string is a valid path doc_id for GET and DELETE, so those have no invalid requests to make.
BUDGET = {
    "GET /search": (900, 300),
    "POST /search": (900, 350),
    "GET /documents/{doc_id}": (1600, 0),
    "GET /documents/{doc_id}/source": (300, 0),
    "GET /jobs/{job_id}": (200, 0),
    "GET /export": (5, 0),  # each one copies the whole collection
    "POST /reindex": (3, 30),  # each valid one may build the collection again (with force, switch it)
    "POST /rollback": (5, 0),
    "PUT /eval": (20, 0),  # any text fits the schema; only QA lines are accepted
    "GET /eval": (10, 0),
    "POST /documents": (90, 150),
    "PUT /documents/{doc_id}": (70, 150),
    "DELETE /documents/{doc_id}": (900, 0),
}
SMALL = (25, 0)  # operations without parameters run out of distinct requests quickly
# Collections and keys: each created collection is a store on disk, so a few dozen of each kind.
NAMED, SMALL_NAMED = (30, 30), (25, 0)
MIN_REQUESTS = int(5000 * SCALE)
# The schema needs no engine, so the operations are known at collection; the app under test is made once.
_SCHEMA = create_app(Settings(api_key=KEY, admin_key=KEY)).openapi()
OPERATIONS = sorted(f"{method.upper()} {path}" for path, item in _SCHEMA["paths"].items() for method in item)
sent: Counter[str] = Counter()
statuses: Counter[int] = Counter()
REPORT = os.environ.get("CITELINE_FUZZ_REPORT")  # `make fuzz` writes its figures here
# Invalid data must be rejected with a 4xx. schemathesis' default list lacks 413: an invalid batch (too many
# documents) that is also larger than the app's body limit is turned away by the size check first, rightly.
REJECTIONS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
CONFIG = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}}})


@schemathesis.serializer("application/x-tar", "application/x-ndjson")
def tar_bytes(ctx: schemathesis.SerializationContext, value: object) -> bytes:
    """An import's or questions' body as generated: bytes as they are, anything else as its text."""
    return value if isinstance(value, bytes) else str(value).encode()


def satisfy_cross_field_rules(case: schemathesis.Case) -> None:
    """Valid requests obey the rules that span fields, which a JSON Schema cannot state."""
    if case.method == "PUT" and isinstance(case.body, dict) and case.body.get("doc_id") is not None:
        case.body["doc_id"] = unquote(case.path_parameters["doc_id"])  # a body doc_id must equal the path's
    if case.method == "POST" and isinstance(case.body, dict) and isinstance(case.body.get("documents"), list):
        # One document per id in a batch (an id left out is derived from the title and text).
        unique = {}
        for document in case.body["documents"]:
            title = (document.get("title") or "").strip() or None
            unique.setdefault(document.get("doc_id") or derive_doc_id(document["text"], title), document)
        case.body["documents"] = list(unique.values())
    if case.media_type == "multipart/form-data" and isinstance(case.body, dict):
        # A file's content must be readable (random bytes are rightly refused): text, of any length.
        files = case.body.get("file")
        count = len(files) if isinstance(files, list) else 1
        case.body["file"] = [f"Uploaded note {i} of a fuzzed upload.".encode() for i in range(count)]
    for where in (case.query, case.body):
        if isinstance(where, dict) and where.get("date_from") and where.get("date_to"):
            low, high = sorted([where["date_from"], where["date_to"]])  # ISO days sort as dates
            where["date_from"], where["date_to"] = low, high


@pytest.fixture(scope="module")
def fuzz_app(seed_index: Path, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[FastAPI]:
    index = copy_index(seed_index, tmp_path_factory.mktemp("fuzz") / "index")
    config = Settings(index=index, api_key=KEY, admin_key=KEY, request_timeout_seconds=20, max_body_bytes=200_000)
    app = create_app(config, engine=Engine.load(config, embedder=embedder))
    with TestClient(app) as client:  # runs the lifespan: the engine is in place for schemathesis' own client
        # A named collection with documents, for the fuzz's names to find now and then ("default" too).
        client.post("/collections", json={"name": "fuzz", "public": True}, headers=AUTH)
        client.put("/collections/fuzz/documents/note", json={"text": "A fuzzed collection's note."}, headers=AUTH)
        yield app


@pytest.fixture(scope="module")
def api(fuzz_app: FastAPI) -> schemathesis.schemas.BaseSchema:
    """The app's own /openapi.json; requests go in-process (ASGI), schemathesis' own probes too."""
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app, config=CONFIG)


def test_the_schema_declares_every_api_operation():
    root = {o for o in OPERATIONS if not o.split(" ", 1)[1].startswith(("/collections", "/keys"))}
    assert root == set(BUDGET) | {"GET /documents", "GET /jobs", "GET /health", "GET /ready", "GET /metrics"}
    named = {o.replace("/collections/{name}", "", 1) for o in OPERATIONS if "/collections/{name}/" in o}
    per_collection = ("/search", "/documents", "/jobs", "/export", "/eval", "/reindex", "/rollback")
    assert named == {o for o in root if o.split(" ", 1)[1].startswith(per_collection)} | {"POST /import"}
    assert {"POST /collections", "GET /keys", "POST /keys", "DELETE /keys/{key_id}"} <= set(OPERATIONS)


def budget_of(operation: str) -> tuple[int, int]:
    method, path = operation.split(" ", 1)
    if path.startswith(("/collections", "/keys")):
        spec = _SCHEMA["paths"][path][method.lower()]
        return NAMED if spec.get("parameters") or spec.get("requestBody") else SMALL_NAMED
    return BUDGET.get(operation, SMALL)


RUNS = [
    pytest.param(
        operation,
        mode,
        auth,
        id=f"{operation}-{'valid' if mode == GenerationMode.POSITIVE else 'invalid'}{'' if auth else '-no-key'}",
    )
    for operation in OPERATIONS
    for mode, budget in zip(GenerationMode, budget_of(operation), strict=True)
    for auth in ((True, False) if operation.split(" ", 1)[1].startswith(("/collections", "/keys")) else (True,))
    if budget
]


@pytest.mark.parametrize(("operation", "mode", "auth"), RUNS)
def test_operation_answers_as_declared(
    api: schemathesis.schemas.BaseSchema, operation: str, mode: GenerationMode, auth: bool
) -> None:
    method, path = operation.split(" ", 1)
    positive, negative = budget_of(operation)
    examples = max(1, int((positive if mode == GenerationMode.POSITIVE else negative) * SCALE))
    # A query string has no types: an "object" or "array" made invalid there arrives as plain text that is
    # valid. Invalid JSON bodies are still checked for rejection.
    excluded = [negative_data_rejection] if method == "GET" else []
    if path.endswith(("/import", "/eval")):  # any bytes fit the schema; only an export, or QA lines, are accepted
        excluded.append(positive_data_acceptance)

    @given(case=api[path][method].as_strategy(mode))
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: schemathesis.Case) -> None:
        if mode == GenerationMode.POSITIVE:
            satisfy_cross_field_rules(case)
        sent[operation] += 1
        response = case.call_and_validate(headers=AUTH if auth else {}, excluded_checks=excluded)
        statuses[response.status_code] += 1

    run()


def test_the_fuzz_sent_enough_requests() -> None:
    total = sum(sent.values())
    print(f"\nfuzz: {total} requests: {dict(sent)}")
    if len(sent) < len(OPERATIONS):
        pytest.skip("only part of the fuzz ran (a -k selection): nothing to count")
    assert total >= MIN_REQUESTS, f"only {total} generated requests: {dict(sent)}"
    if REPORT:
        write_report(Path(REPORT), total)


def write_report(path: Path, total: int) -> None:
    """The figures of a passing run (a failing one stops before): requests per operation and statuses."""
    rows = "\n".join(f"| `{operation}` | {count} |" for operation, count in sorted(sent.items()))
    codes = ", ".join(f"{code}: {count}" for code, count in sorted(statuses.items()))
    path.write_text(
        "# API fuzzing (`make fuzz`)\n\n"
        f"schemathesis {schemathesis.__version__} against the app's own OpenAPI schema, in process (ASGI), "
        "with the admin key, and the collection and key operations also without; "
        f"examples per operation x{SCALE:g} (`CITELINE_FUZZ_SCALE`).\n\n"
        f"**{total} generated requests, 0 failures**: no 5xx, every status code, content type, header and body "
        "as declared, no hang (a request past the app's timeout would have been a 503).\n\n"
        f"Statuses: {codes}.\n\n| operation | requests |\n|---|---|\n{rows}\n",
        encoding="utf-8",
    )
