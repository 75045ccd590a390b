"""A real `citeline serve` in a subprocess on a free port, for tests that talk to it over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(*serve_args: str, timeout: float = 120) -> Iterator[str]:
    """`citeline serve SERVE_ARGS --port <free>` until healthy; yields its base URL and stops it afterwards."""
    with server_process(*serve_args, timeout=timeout) as (base, _):
        yield base


@contextmanager
def server_process(
    *serve_args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Like `running_server`, yielding the process too (its output is piped: read it once it has exited)."""
    port = free_port()
    env = {**os.environ, "CITELINE_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1", **(env or {})}
    server = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", *serve_args, "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert server.poll() is None, server.stdout.read().decode() if server.stdout else "server exited"
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"server did not become healthy in {timeout:.0f} s"
            time.sleep(0.5)
        yield base, server
    finally:
        if server.poll() is None:
            server.terminate()
        server.wait(timeout=30)
