"""`python -m bench.reindex` (`make bench-reindex`, also run by `make bench`): what a shadow reindex costs the
searches that go on during it. Writes bench/REINDEX.md.

SQuAD dev articles are indexed as the default collection of a `citeline serve` process (the reindex job
runs on a thread of that process, at nice 19), with a sample of their questions as the collection's
evaluation questions. One client in this process then searches at a steady rate over one keep-alive
connection: first with nothing else running (idle), then while a reindex to another passage size builds,
evaluates and switches. Both latency
series are measured in the same run, side by side; the report gives their ratio, the reindex's duration,
its figures and its decision.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import random
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

from bench.common import ROOT, citeline_server
from bench.formats import articles
from indexer.build import sync_index
from indexer.model.embedding import Embedder
from indexer.text.documents import Document
from service.settings import Settings
from service.startup import chunker_config, load_embedder

logger = logging.getLogger("bench.reindex")
REPORT = ROOT / "bench" / "REINDEX.md"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def build(folder: Path, count: int, embedder: Embedder) -> tuple[Settings, list[dict[str, str]]]:
    documents, questions = [], []
    for stem, title, paragraphs, qas in articles(count):
        text = "\n\n".join(paragraphs)
        documents.append(Document(doc_id=stem, text=text, title=title, source=f"squad/{stem}.txt"))
        questions += [{"q": q, "doc_id": stem, "answer": a} for _, q, a in qas]
    settings = Settings(index=folder / "index", reload_seconds=0)
    sync_index(documents, settings.index, embedder, chunker_config(settings, embedder), show_progress=False)
    return settings, questions


class Client:
    """One keep-alive HTTP/1.1 connection to the server, with the admin key."""

    def __init__(self, url: str, key: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
        self.headers = {"Authorization": f"Bearer {key}"}

    def call(self, method: str, path: str, body: bytes | None = None, kind: str = "") -> tuple[int, Any]:
        headers = {**self.headers, **({"Content-Type": kind} if kind else {})}
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw and raw[:1] in b"{[" else raw


def searches(client: Client, questions: list[str], until: Any, rate: float) -> list[float]:
    """Milliseconds of each search, `rate` a second, until `until()` is true."""
    timings, n = [], 0
    next_at = time.perf_counter()
    while not until():
        started = time.perf_counter()
        query = urllib.parse.urlencode({"q": questions[n % len(questions)], "k": 5})
        status, body = client.call("GET", f"/search?{query}")
        timings.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise RuntimeError(f"a search failed during the bench: {status} {str(body)[:200]}")
        n += 1
        next_at += 1 / rate
        time.sleep(max(0.0, next_at - time.perf_counter()))
    return timings


def run(count: int, sample: int, idle_searches: int, passage_tokens: int, rate: float) -> dict[str, Any]:
    embedder = load_embedder(Settings())
    with tempfile.TemporaryDirectory(prefix="citeline-bench-reindex-") as raw:
        settings, qa = build(Path(raw), count, embedder)
        questions = random.Random(0).sample(qa, min(sample, len(qa)))
        with citeline_server(settings.index, {"CITELINE_ADMIN_KEY": "bench"}) as url:
            client = Client(url, "bench")
            body = "\n".join(json.dumps(q) for q in questions).encode()
            assert client.call("PUT", "/eval", body, "application/x-ndjson")[0] == 204
            texts = [q["q"] for q in qa]
            warm = iter(range(20))  # the first searches load what later ones reuse
            searches(client, texts, lambda: next(warm, None) is None, rate)
            done = iter(range(idle_searches))
            idle = searches(client, texts, lambda: next(done, None) is None, rate)
            started = time.monotonic()
            plan = json.dumps({"passage_tokens": passage_tokens, "force": True}).encode()
            status, job = client.call("POST", "/reindex", plan, "application/json")
            if status != 202:
                raise RuntimeError(f"the reindex did not start: {status} {job}")
            state: dict[str, Any] = {}

            def ended() -> bool:
                nonlocal state
                state = client.call("GET", f"/jobs/{job['id']}")[1]
                return bool(state["state"] in ("done", "failed"))

            during = searches(client, texts, ended, rate)
            seconds = time.monotonic() - started
            passages = client.call("GET", "/health")[1]["passages"]
    if state["state"] != "done":
        raise RuntimeError(f"the reindex failed: {state.get('error')}")
    return {
        "articles": count,
        "passages": passages,
        "questions": len(questions),
        "passage_tokens": passage_tokens,
        "seconds": seconds,
        "idle": idle,
        "during": during,
        "report": state["reindex"],
        "rate": rate,
    }


def write_report(result: dict[str, Any], path: Path) -> None:
    idle, during, report = result["idle"], result["during"], result["report"]

    def row(name: str, values: list[float]) -> str:
        p50, p99 = percentile(values, 50), percentile(values, 99)
        return f"| {name} | {len(values)} | {p50:.1f} | {p99:.1f} | {max(values):.1f} |"

    ratio50 = percentile(during, 50) / percentile(idle, 50)
    ratio99 = percentile(during, 99) / percentile(idle, 99)
    figures = "\n".join(
        f"| {m} | {report['before'][m]:.4f} | {report['after'][m]:.4f} |" for m in report["before"] or {}
    )
    path.write_text(
        "# Shadow reindex under search load (`make bench-reindex`)\n\n"
        f"{result['articles']} SQuAD dev articles ({result['passages']:,} passages after the switch) served as the "
        f"default collection, {result['questions']} of their questions as its evaluation questions; a reindex to "
        f"{result['passage_tokens']} tokens per passage (forced, so it switches whatever the figures) while one "
        f"client searches {result['rate']:g} times a second over HTTP (loopback, keep-alive). Idle and during were "
        "measured in the same run, one after the other; the reindex job is a thread of the server, at nice 19. "
        "2 cores, shared.\n\n"
        f"**Reindex: {result['seconds']:.1f} s** from the request to the switch (build, catch-up, evaluation "
        f"of both indexes, switch); decision `{report['decision']}`.\n\n"
        "| searches | count | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n"
        f"{row('idle', idle)}\n{row('during the reindex', during)}\n\n"
        f"During / idle: p50 ×{ratio50:.2f}, p99 ×{ratio99:.2f}. No search failed.\n\n"
        "| metric (hybrid) | before | after |\n|---|---|---|\n"
        f"{figures}\n",
        encoding="utf-8",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=12, help="SQuAD dev articles (default 12)")
    parser.add_argument("--questions", type=int, default=200, help="evaluation questions (default 200)")
    parser.add_argument("--idle", type=int, default=200, help="searches with nothing else running (default 200)")
    parser.add_argument("--passage-tokens", type=int, default=128, help="the reindex's passage size (default 128)")
    parser.add_argument("--rate", type=float, default=10.0, help="searches a second (default 10)")
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(args.articles, args.questions, args.idle, args.passage_tokens, args.rate)
    write_report(result, args.report)
    print(args.report.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
