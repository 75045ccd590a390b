"""The `citeline` command: search without a server, and a real `citeline serve` queried over HTTP."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from service.cli import build_parser, main
from service.settings import Settings
from tests.server import server_process


def test_settings_come_from_env_and_flags_override(tmp_path: Path):
    env = {"CITELINE_INDEX": str(tmp_path), "CITELINE_PORT": "9001", "CITELINE_PASSAGE_TOKENS": "80"}
    settings = Settings.from_env(env)
    assert (settings.index, settings.port, settings.passage_tokens) == (tmp_path, 9001, 80)
    with pytest.warns(DeprecationWarning, match="CITELINE_CHUNK_TOKENS is deprecated: set CITELINE_PASSAGE_TOKENS"):
        assert Settings.from_env({"CITELINE_CHUNK_TOKENS": "64"}).passage_tokens == 64
    args = build_parser().parse_args(["index", "seeds", "--chunk-tokens", "72"])
    assert args.passage_tokens == 72, "the old flag still works"
    assert Settings.from_env(env, port=9002, host=None).port == 9002
    with pytest.raises(ValueError, match="CITELINE_PORT='eighty' is not a valid int"):
        Settings.from_env({"CITELINE_PORT": "eighty"})


def test_help_lists_commands_and_settings():
    text = build_parser().format_help()
    for word in ("index", "serve", "search", "CITELINE_INDEX", "CITELINE_MODEL"):
        assert word in text


def test_cli_search_json_matches_the_api(seed_index: Path, capsys):
    assert main(["search", "how many US troops were sent", "--index", str(seed_index), "--json", "-k", "2"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["results"][0]["citation"]["doc_id"] == "001_2c0b17beeba9964b"
    assert len(body["results"]) == 2


def test_cli_errors_are_clear(tmp_path: Path, capsys):
    assert main(["search", "anything", "--index", str(tmp_path / "none")]) == 2
    assert "no index at" in capsys.readouterr().err
    assert main(["search", "   ", "--index", str(tmp_path)]) == 2
    assert "q: " in capsys.readouterr().err


@pytest.fixture(scope="module")
def served_seeds(seed_index: Path) -> Iterator[str]:
    """A real `citeline serve` on the seeds, keeping idle connections 2 s (the keep-alive test's setting)."""
    with server_process("--index", str(seed_index), env={"CITELINE_KEEP_ALIVE_SECONDS": "2"}) as (base, _):
        yield base


def test_real_server_answers_over_http(served_seeds: str):
    base = served_seeds
    body = httpx.get(f"{base}/search", params={"q": "how many US troops were sent"}, timeout=30).json()
    first = body["results"][0]
    assert first["citation"]["doc_id"] == "001_2c0b17beeba9964b"
    doc = httpx.get(f"{base}/documents/{first['citation']['doc_id']}", timeout=10).json()
    assert doc["text"][first["citation"]["start"] : first["citation"]["end"]] == first["text"]
    assert httpx.get(f"{base}/search", params={"q": " "}, timeout=10).status_code == 422


def get_health(connection: socket.socket) -> bytes:
    """One keep-alive `GET /health` on an open connection: the raw response, or b"" if the server closed it."""
    connection.sendall(b"GET /health HTTP/1.1\r\nHost: citeline\r\n\r\n")
    response = b""
    while b"\r\n\r\n" not in response or len(response.split(b"\r\n\r\n", 1)[1]) < content_length(response):
        chunk = connection.recv(65536)
        if not chunk:
            return response
        response += chunk
    return response


def content_length(response: bytes) -> int:
    for line in response.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def test_idle_connections_stay_open_for_the_keep_alive_setting(served_seeds: str):
    # A client must close an idle connection before the server does, or it may reuse one the server is
    # closing and get no response: the default outlasts httpx's (and most proxies') idle expiry.
    assert Settings().keep_alive_seconds > httpx.Limits().keepalive_expiry
    address = urlsplit(served_seeds)
    with (
        socket.create_connection((address.hostname, address.port), timeout=10) as reused,
        socket.create_connection((address.hostname, address.port), timeout=10) as idle,
    ):
        assert get_health(reused).startswith(b"HTTP/1.1 200") and get_health(idle).startswith(b"HTTP/1.1 200")
        time.sleep(1.0)
        assert get_health(reused).startswith(b"HTTP/1.1 200")  # idle 1 s of 2: still open
        time.sleep(2.5)
        idle.settimeout(0.5)  # uvicorn's own 5 s would still hold it open: recv would time out
        assert idle.recv(1) == b"", "the server kept a connection idle for 3.5 s open"  # setting 2 s: closed


def test_citeline_reindex_asks_a_running_server_and_reports_its_decision(
    seed_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from tests.copies import copy_index

    index = copy_index(seed_index, tmp_path / "index")
    questions = Path(__file__).resolve().parents[1] / "data" / "seed_questions.jsonl"
    with server_process("--index", str(index), env={"CITELINE_ADMIN_KEY": "admin"}) as (url, _):
        common = ["--url", url, "--key", "admin", "--questions", str(questions)]
        assert main(["reindex", *common, "--passage-tokens", "24", "--metric", "ndcg@10"]) == 1
        out = capsys.readouterr().out
        assert "refused" in out and "ndcg@10 fell from" in out and out.startswith("before")
        assert main(["reindex", "--url", url, "--key", "wrong"]) == 2
        assert "401" in capsys.readouterr().err
        assert main(["reindex", "--url", url, "--key", "admin", "--collection", "nope"]) == 2
        assert "404" in capsys.readouterr().err
    assert main(["reindex", "--url", url, "--key", "admin"]) == 2
    assert "no server answers" in capsys.readouterr().err
