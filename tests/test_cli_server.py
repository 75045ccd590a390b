"""The `citeline` command: search without a server, and a real `citeline serve` queried over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from service.cli import build_parser, main
from service.settings import Settings
from tests.server import running_server


def test_settings_come_from_env_and_flags_override(tmp_path: Path):
    env = {"CITELINE_INDEX": str(tmp_path), "CITELINE_PORT": "9001", "CITELINE_CHUNK_TOKENS": "96"}
    settings = Settings.from_env(env)
    assert (settings.index, settings.port, settings.chunk_tokens) == (tmp_path, 9001, 96)
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


def test_real_server_answers_over_http(seed_index: Path):
    with running_server("--index", str(seed_index)) as base:
        body = httpx.get(f"{base}/search", params={"q": "how many US troops were sent"}, timeout=30).json()
        first = body["results"][0]
        assert first["citation"]["doc_id"] == "001_2c0b17beeba9964b"
        doc = httpx.get(f"{base}/documents/{first['citation']['doc_id']}", timeout=10).json()
        assert doc["text"][first["citation"]["start"] : first["citation"]["end"]] == first["text"]
        assert httpx.get(f"{base}/search", params={"q": " "}, timeout=10).status_code == 422
