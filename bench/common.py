"""Shared helpers of the benchmark: timing summaries, a served `citeline`, an HTTP load generator."""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class LatencySummary:
    """Latency of many requests, in milliseconds, and the throughput they achieved."""

    requests: int
    failures: int
    p50: float
    p95: float
    p99: float
    mean: float
    rps: float

    @classmethod
    def of(cls, latencies_s: Sequence[float], failures: int, wall_s: float) -> LatencySummary:
        ms = [x * 1000 for x in latencies_s]
        return cls(
            requests=len(ms) + failures,
            failures=failures,
            p50=percentile(ms, 50),
            p95=percentile(ms, 95),
            p99=percentile(ms, 99),
            mean=statistics.fmean(ms) if ms else float("nan"),
            rps=len(ms) / wall_s if wall_s > 0 else float("nan"),
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"no answer from {url} within {timeout_s}s")


@contextmanager
def running(command: Sequence[str], health_url: str, env: dict[str, str] | None = None) -> Iterator[None]:
    """Run a server process until the block ends; wait for `health_url` to answer first."""
    process = subprocess.Popen(
        list(command),
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(health_url, process)
        yield
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """SIGTERM, then SIGKILL after `timeout_s`."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def citeline_server(index: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`citeline serve` on a free loopback port over `index`; yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "service.cli", "serve", "--index", str(index), "--port", str(port)]
    with running(command, f"http://127.0.0.1:{port}/health", {"CITELINE_LOG_LEVEL": "WARNING", **(env or {})}):
        yield f"http://127.0.0.1:{port}"


class KeepAliveConnection:
    """One HTTP/1.1 keep-alive connection that sends GETs and reads `Content-Length` answers, and no more.

    The instrument of the latency benchmark: httpx spends about 1 ms of Python per request on building
    and parsing (measured against `http.client`, 2 shared cores), which would be counted as the server's
    time and, at 8 clients, takes a core from the server being measured. Every server is measured with it.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, target: str, timeout_s: float) -> tuple[int, bytes]:
        """GET `target` (path and query string); the status and body. Reconnects after a closed connection."""
        if self._writer is None or self._reader is None or self._reader.at_eof():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        request = f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n"
        self._writer.write(request.encode("latin-1"))
        return await asyncio.wait_for(self._response(self._reader), timeout_s)

    async def _response(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        lengths = [value for name, value in headers.items() if name.strip().lower() == "content-length"]
        if not lengths:
            raise ValueError("the benchmark client reads only responses with a Content-Length")
        body = await reader.readexactly(int(lengths[0]))
        if any(name.strip().lower() == "connection" and "close" in value.lower() for name, value in headers.items()):
            self.close()
        return status, body

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = self._reader = None


def load(
    url: str, params: Sequence[dict[str, str | int]], clients: int, requests: int, timeout_s: float = 60
) -> LatencySummary:
    """`requests` GETs of `url` (cycling through `params`) from `clients` concurrent clients, on loopback.

    Each client is one keep-alive connection (`KeepAliveConnection`) that sends its next request when the
    previous answer has arrived; latency runs from sending to the last byte of the body.
    """
    parsed = urllib.parse.urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    targets = [f"{parsed.path}?{urllib.parse.urlencode(query)}" for query in params]

    async def run() -> LatencySummary:
        latencies: list[float] = []
        failures = 0
        issued = 0
        connections = [KeepAliveConnection(host, port) for _ in range(clients)]

        async def worker(connection: KeepAliveConnection) -> None:
            nonlocal issued, failures
            while issued < requests:
                target = targets[issued % len(targets)]
                issued += 1
                started = time.perf_counter()
                try:
                    status, _ = await connection.get(target, timeout_s)
                    ok = status == 200
                except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
                    connection.close()
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1

        for connection in connections:  # open every connection and warm the server
            await connection.get(targets[0], timeout_s)
        began = time.perf_counter()
        await asyncio.gather(*(worker(connection) for connection in connections))
        wall = time.perf_counter() - began
        for connection in connections:
            connection.close()
        return LatencySummary.of(latencies, failures, wall)

    return asyncio.run(run())
