"""Load with live writes: concurrent searches against a real `citeline serve` while documents change under them.

Phase 1 ("quiet"): `clients` concurrent clients send searches. Phase 2 ("writes"): the same clients go on
while a writer adds, updates and deletes documents through the API and `citeline index` re-indexes the served
index from another process (the server's watcher takes those writes in). Every response is recorded;
afterwards the run checks that nothing failed and that each search answered after a write was acknowledged
saw it: a search for an added document filtered by its doc_id finds it (with its latest text after an
update), one started after its delete was acknowledged never does. Loopback only, bounded in count and time.

    python -m bench.load --searches 10000 --report bench/LOAD.md    # `make load`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.common import free_port, percentile
from indexer.store.segments import read_manifest

ROOT = Path(__file__).resolve().parent.parent
KEY = "load-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
QUESTIONS = ROOT / "tests" / "data" / "seed_questions.jsonl"
MODES = ("hybrid", "hybrid", "dense", "bm25")


@dataclass
class Sample:
    """One request: when it ran, what it was, what came back."""

    kind: str  # search | check | add | update | delete
    phase: str  # quiet | writes
    start: float
    end: float
    status: int  # 0: no response (a transport error)
    error: str = ""


@dataclass
class Observation:
    """A search filtered by one written document's doc_id, and whether (and which version of) it was found."""

    doc_id: str
    start: float
    end: float
    found: bool
    version: int  # the version number in the found text, 0 when not found


@dataclass
class Lifecycle:
    """When the writer's requests for one document were sent and acknowledged (monotonic seconds)."""

    added: float | None = None
    update_sent: float | None = None
    updated: float | None = None
    delete_sent: float | None = None
    deleted: float | None = None


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    lifecycles: dict[str, Lifecycle] = field(default_factory=dict)
    reindexes: int = 0  # `citeline index` runs on the served index, from another process
    reindex_seconds: list[float] = field(default_factory=list)


def doc_text(n: int, version: int) -> str:
    return (
        f"Lighthouse log {n}, version {version}. The keeper on Skerry {n} counted {n * 7 + version} gulls at dawn "
        f"and wrote that the fog horn sounded {version} times before the ferry arrived."
    )


@contextmanager
def served(index: Path, log: Path, timeout: float = 180, seal_passages: int = 20_000) -> Iterator[str]:
    """`citeline serve` on `index` (writes on, following other writers every 0.2 s, sealing vector segments
    every `seal_passages` passages written) until ready; its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "CITELINE_API_KEY": KEY,
        "CITELINE_RELOAD_SECONDS": "0.2",
        "CITELINE_LOG_LEVEL": "WARNING",
        "CITELINE_SEAL_PASSAGES": str(seal_passages),
    }
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--index", str(index), "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"the server exited: {log.read_text(errors='replace')[-2000:]}")
                try:
                    if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server was not ready within {timeout:.0f} s")
                time.sleep(0.3)
            yield base
        finally:
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()


async def search_client(
    client: httpx.AsyncClient, run: Run, phase: list[str], budget: list[int], seed: int, questions: list[str]
) -> None:
    """Send searches while the shared budget lasts; every fifth one checks a written document by doc_id."""
    rng = random.Random(seed)
    while budget[0] > 0:
        budget[0] -= 1
        written = [doc_id for doc_id, life in run.lifecycles.items() if life.added is not None]
        if written and rng.random() < 0.2:
            await check(client, run, rng.choice(written), phase[0])
            continue
        params: dict[str, str | int] = {
            "q": rng.choice(questions),
            "k": rng.choice((1, 5, 10)),
            "mode": rng.choice(MODES),
        }
        start = time.monotonic()
        try:
            response = await client.get("/search", params=params)
            status, error = response.status_code, "" if response.status_code == 200 else response.text[:200]
        except httpx.HTTPError as exc:
            status, error = 0, f"{type(exc).__name__}: {exc}"
        run.samples.append(Sample("search", phase[0], start, time.monotonic(), status, error))


async def check(client: httpx.AsyncClient, run: Run, doc_id: str, phase: str) -> None:
    """Search filtered by `doc_id` for words of its text: found or not, and which version."""
    params: dict[str, str | int] = {"q": "how many gulls did the keeper count", "doc_id": doc_id, "k": 1}
    start = time.monotonic()
    try:
        response = await client.get("/search", params=params)
    except httpx.HTTPError as exc:
        run.samples.append(Sample("check", phase, start, time.monotonic(), 0, f"{type(exc).__name__}: {exc}"))
        return
    end = time.monotonic()
    run.samples.append(Sample("check", phase, start, end, response.status_code, response.text[:200]))
    if response.status_code != 200:
        return
    results = response.json()["results"]
    version = 0
    if results:
        text = results[0]["text"]
        version = int(text.split("version ", 1)[1].split(".", 1)[0]) if "version " in text else -1
    run.observations.append(Observation(doc_id, start, end, bool(results), version))


async def write(client: httpx.AsyncClient, run: Run, kind: str, method: str, url: str, body: dict | None) -> bool:
    start = time.monotonic()
    try:
        response = await client.request(method, url, json=body, headers=AUTH)
        status, error = response.status_code, "" if response.status_code < 300 else response.text[:300]
    except httpx.HTTPError as exc:
        status, error = 0, f"{type(exc).__name__}: {exc}"
    run.samples.append(Sample(kind, "writes", start, time.monotonic(), status, error))
    return 200 <= status < 300


async def writer(client: httpx.AsyncClient, run: Run, stop: asyncio.Event) -> None:
    """Add, update and delete documents one after another, checking each right after it is acknowledged."""
    n = 0
    while not stop.is_set():
        doc_id = f"load-{n}"
        life = run.lifecycles.setdefault(doc_id, Lifecycle())
        body = {"doc_id": doc_id, "title": f"Skerry {n}", "text": doc_text(n, 1)}
        if not await write(client, run, "add", "POST", "/documents", body):
            return
        life.added = time.monotonic()
        await check(client, run, doc_id, "writes")
        life.update_sent = time.monotonic()
        if not await write(client, run, "update", "PUT", f"/documents/{doc_id}", {"text": doc_text(n, 2)}):
            return
        life.updated = time.monotonic()
        await check(client, run, doc_id, "writes")
        if n % 2 == 0:  # every other document is kept to the end
            life.delete_sent = time.monotonic()
            if not await write(client, run, "delete", "DELETE", f"/documents/{doc_id}", None):
                return
            life.deleted = time.monotonic()
            await check(client, run, doc_id, "writes")
        n += 1


def extra_corpus(folder: Path, count: int) -> Path:
    """A JSONL file of `count` short documents for the re-index to add (and then remove again)."""
    path = folder / "extra.jsonl"
    lines = [
        json.dumps({"id": f"extra-{i}", "title": f"Harbour log {i}", "text": f"Day {i}: the harbour cranes were idle."})
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def reindexer(index: Path, sources: list[str], extra: Path, rounds: int, run: Run) -> None:
    """Run `citeline index` on the served index `rounds` times, with the extra documents and without."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CITELINE_LOG_LEVEL": "WARNING"}
    for round_ in range(rounds):
        started = time.monotonic()
        with_extra = [str(extra)] if round_ % 2 == 0 else []
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service.cli", "index", *sources, *with_extra, "--index", str(index), "--quiet",
            cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"citeline index failed: {stderr.decode(errors='replace')[-1000:]}")
        run.reindexes += 1
        run.reindex_seconds.append(time.monotonic() - started)


def violations(run: Run) -> list[str]:
    """Searches that missed an acknowledged write (or saw a deleted or outdated document)."""
    found: list[str] = []
    for o in run.observations:
        life = run.lifecycles[o.doc_id]
        if life.deleted is not None and o.start > life.deleted:
            if o.found:
                found.append(f"{o.doc_id} found by a search started after its delete was acknowledged")
        elif life.added is not None and o.start > life.added and (life.delete_sent is None or o.end < life.delete_sent):
            if not o.found:
                found.append(f"{o.doc_id} missing from a search started after its add was acknowledged")
            elif life.updated is not None and o.start > life.updated and o.version != 2:
                found.append(f"{o.doc_id}: version {o.version} seen after the update was acknowledged")
    return found


async def load(base: str, index: Path, args: argparse.Namespace) -> Run:
    run = Run()
    questions = [json.loads(line)["q"] for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line]
    limits = httpx.Limits(max_connections=args.clients + 4)
    timeout = httpx.Timeout(60.0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:
        phase = ["quiet"]
        budget = [args.searches // 3]
        await asyncio.gather(*(search_client(client, run, phase, budget, i, questions) for i in range(args.clients)))
        phase[0] = "writes"
        budget[0] = args.searches - args.searches // 3
        stop = asyncio.Event()
        writes = asyncio.create_task(writer(client, run, stop))
        extra = extra_corpus(index.parent, args.reindex_documents)
        reindex = asyncio.create_task(reindexer(index, args.sources, extra, args.reindex_rounds, run))
        searches = asyncio.gather(*(search_client(client, run, phase, budget, 100 + i, questions)
                                    for i in range(args.clients)))  # fmt: skip
        await asyncio.gather(searches, reindex)
        stop.set()
        await writes
    return run


def summary(run: Run, wall: float) -> dict:
    def stats(samples: list[Sample]) -> dict:
        ms = [(s.end - s.start) * 1000 for s in samples if s.status]
        return {
            "requests": len(samples),
            "p50_ms": round(percentile(ms, 50), 1),
            "p90_ms": round(percentile(ms, 90), 1),
            "p99_ms": round(percentile(ms, 99), 1),
            "max_ms": round(max(ms, default=float("nan")), 1),
        }

    searches = [s for s in run.samples if s.kind in ("search", "check")]
    failed = [s for s in run.samples if not (200 <= s.status < 300)]
    return {
        "wall_s": round(wall, 1),
        "searches": len(searches),
        "writes": {kind: sum(1 for s in run.samples if s.kind == kind) for kind in ("add", "update", "delete")},
        "failed": len(failed),
        "server_errors": sum(1 for s in failed if s.status >= 500),
        "failures": [f"{s.kind} {s.status} {s.error}" for s in failed[:10]],
        "checks": len(run.observations),
        "violations": violations(run),
        "reindex_runs": run.reindexes,
        "reindex_s": [round(x, 1) for x in run.reindex_seconds],
        "quiet": stats([s for s in searches if s.phase == "quiet"]),
        "during_writes": stats([s for s in searches if s.phase == "writes"]),
        "writes_latency": stats([s for s in run.samples if s.kind in ("add", "update", "delete")]),
    }


def report_markdown(result: dict, args: argparse.Namespace) -> str:
    rows = "\n".join(
        f"| {name} | {r['requests']} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {r['max_ms']} |"
        for name, r in (
            ("searches, quiet", result["quiet"]),
            ("searches, during writes + re-index", result["during_writes"]),
            ("writes (add, update, delete)", result["writes_latency"]),
        )
    )
    w = result["writes"]
    return (
        "# Load with live writes (`make load`)\n\n"
        f"`python -m bench.load --searches {args.searches} --clients {args.clients}`: a real `citeline serve` on "
        f"loopback (seed index), {args.clients} concurrent search clients; in the second phase one writer adds, "
        "updates and deletes documents through the API while `citeline index` re-indexes the served index "
        f"{args.reindex_rounds} times from another process (adding {args.reindex_documents} documents, then "
        "removing them) and the server takes those writes in. Rough figures: a shared 2-core machine, other work "
        "running.\n\n"
        f"**{result['searches']} searches and {sum(w.values())} writes ({w['add']} adds, {w['update']} updates, "
        f"{w['delete']} deletes) in {result['wall_s']} s: {result['failed']} failed, {result['server_errors']} 5xx; "
        f"{result['checks']} read-your-write checks, {len(result['violations'])} violations; "
        f"{result['reindex_runs']} re-index runs taken in; {result['segment_changes']} seals and merges of vector "
        f"segments in the background (`CITELINE_SEAL_PASSAGES={args.seal_passages}`).**\n\n"
        "| requests | count | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n"
        f"{rows}\n\n"
        "Searches during writes slow down mostly because a write (and the re-index even more) embeds text and "
        "updates BM25 on the same two cores, and seals and merges (at the lowest CPU priority) write segments and "
        "load the view anew; no search waits for a write.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--searches", type=int, default=10000, help="searches in all (a third before the writes)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent search clients")
    parser.add_argument("--index", type=Path, help="index to copy and serve (default: the seeds, indexed first)")
    parser.add_argument("--sources", nargs="+", default=[str(ROOT / "seeds")], help="what the re-index indexes")
    parser.add_argument("--reindex-rounds", type=int, default=2, help="`citeline index` runs from another process")
    parser.add_argument("--reindex-documents", type=int, default=200, help="documents each even run adds")
    parser.add_argument(
        "--seal-passages", type=int, default=100, help="the server's CITELINE_SEAL_PASSAGES (small: seals often)"
    )
    parser.add_argument("--max-seconds", type=float, default=900, help="give up (and fail) after this long")
    parser.add_argument("--report", type=Path, help="write the figures as Markdown here")
    args = parser.parse_args(argv)
    result = run_load(args)
    print(json.dumps(result, indent=2))
    if args.report:
        args.report.write_text(report_markdown(result, args), encoding="utf-8")
    return 0 if not result["failed"] and not result["violations"] and result["reindex_runs"] else 1


def run_load(args: argparse.Namespace) -> dict:
    """Set up an index, serve it, run both phases within `max_seconds`, and summarise."""
    with tempfile.TemporaryDirectory(prefix="citeline-load-") as tmp:
        index = Path(tmp) / "index"
        if args.index:
            shutil.copytree(args.index, index)
        else:
            subprocess.run(
                [sys.executable, "-m", "service.cli", "index", *args.sources, "--index", str(index), "--quiet"],
                cwd=ROOT,
                env={**os.environ, "HF_HUB_OFFLINE": "1", "CITELINE_LOG_LEVEL": "WARNING"},
                check=True,
            )
        started = time.monotonic()
        with served(index, Path(tmp) / "server.log", seal_passages=args.seal_passages) as base:
            run = asyncio.run(asyncio.wait_for(load(base, index, args), timeout=args.max_seconds))
        return {**summary(run, time.monotonic() - started), "segment_changes": read_manifest(index).generation}


if __name__ == "__main__":
    sys.exit(main())
