"""Shared helpers of the benchmark: timing summaries, a served `citeline`, an HTTP load generator."""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
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
        process.terminate()
        try:
            process.wait(timeout=20)
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


def load(
    url: str, params: Sequence[dict[str, str | int]], clients: int, requests: int, timeout_s: float = 60
) -> LatencySummary:
    """`requests` GETs of `url` (cycling through `params`) from `clients` concurrent clients, on loopback."""

    async def run() -> LatencySummary:
        latencies: list[float] = []
        failures = 0
        issued = 0
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:

            async def worker() -> None:
                nonlocal issued, failures
                while issued < requests:
                    query = params[issued % len(params)]
                    issued += 1
                    started = time.perf_counter()
                    try:
                        response = await client.get(url, params=query)
                        ok = response.status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    if ok:
                        latencies.append(time.perf_counter() - started)
                    else:
                        failures += 1

            await client.get(url, params=params[0])  # warm the connection and the server
            began = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(clients)))
            wall = time.perf_counter() - began
        return LatencySummary.of(latencies, failures, wall)

    return asyncio.run(run())
