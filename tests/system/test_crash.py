"""SIGKILL at random moments of writes, segment seals and merges: no acknowledged write is lost, no deleted
document comes back, no half-written document is visible, citations stay exact, and the index verifies.

A writer process runs a fixed sequence of operations (add, replace, delete; `operation(i)`) through the
engine, printing each one it has acknowledged, and is killed at random moments, again and again. After each
kill the index is opened as a server would (replaying what the BM25 index missed) and checked against the
state the acknowledged operations define; the operation in flight may have landed or not, never half.
`make crash` runs the same harness with CITELINE_CRASH_KILLS=200 and writes its figures to bench/CRASH.md.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from indexer.model.embedding import Embedder
from indexer.store.maintenance import verify_index
from service.engine import Engine
from service.search.retrieval import Mode
from service.settings import Settings
from tests.copies import copy_index

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "seeds"
KILLS = int(os.environ.get("CITELINE_CRASH_KILLS", "6"))
REPORT = os.environ.get("CITELINE_CRASH_REPORT")

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from indexer.store.store import SegmentPolicy
    from indexer.text.documents import Document
    from service.engine import Engine
    from service.settings import Settings
    from tests.system.test_crash import operation

    engine = Engine.load(Settings(index=Path(sys.argv[1]), api_key="k"))
    engine.segments = SegmentPolicy(seal_passages=6, max_segments=3)  # seals and merges every few writes
    print("ready", flush=True)
    for i in range(int(sys.argv[2]), 100000):
        kind, doc_id, text = operation(i)
        if kind == "add":
            engine.add_documents([Document(doc_id=doc_id, text=text, source="api")])
        elif kind == "put":
            engine.put_document(Document(doc_id=doc_id, text=text, source="api"))
        else:
            engine.delete_document(doc_id)
        print(i, flush=True)
        if engine.maintain():
            print("segments", flush=True)
    """
)


def word(i: int, version: str) -> str:
    """A word only operation i's text holds, so a search can find exactly that version."""
    return f"zq{version}{i:05d}x"


def operation(i: int) -> tuple[str, str, str]:
    """Operation i of the sequence: add doc-i; replace the document added just before; delete an older one
    (the first few are adds)."""
    if i % 3 == 0 or i < 5:
        text = f"Harbour log {i}. The cranes were idle on day {i}; keyword {word(i, 'a')}.\n\nShips waited offshore."
        return "add", f"doc-{i}", text
    if i % 3 == 1 and i >= 5:
        text = f"Harbour log {i - 1}, corrected. Keyword {word(i - 1, 'b')}. The cranes moved again at dawn."
        return "put", f"doc-{i - 1}", text
    return "delete", f"doc-{i - 5}", ""


def expected_state(done: int) -> dict[str, str]:
    """The extra documents after operations 0..done-1: id -> text."""
    state: dict[str, str] = {}
    for i in range(done):
        kind, doc_id, text = operation(i)
        if kind == "delete":
            state.pop(doc_id, None)
        else:
            state[doc_id] = text
    return state


def operation_is_valid(i: int) -> bool:
    kind, doc_id, _ = operation(i)
    return kind != "delete" or doc_id in expected_state(i)


def check_index(index: Path, embedder: Embedder, seeds: set[str], done: int) -> int:
    """Check the index after a kill; returns how many operations it holds (`done` or, with the one in flight,
    `done + 1`)."""
    engine = Engine.load(Settings(index=index), embedder=embedder)  # replays what BM25 missed
    try:
        report = verify_index(index)
        live = {d.doc_id: d.text for d in engine.view.live_documents() if d.doc_id not in seeds}
        assert seeds <= set(engine.view.doc_rows), "a seed document was lost"
        candidates = [n for n in (done, done + 1) if expected_state(n) == live]
        assert candidates, f"after {done} acknowledged operations the index holds {sorted(live)}: a write was lost"
        holds = candidates[-1]
        assert report.documents == len(seeds) + len(live)
        for doc_id, text in live.items():
            key = word(int(doc_id.split("-")[1]), "b" if "corrected" in text else "a")
            hits = engine.search(key, 3, Mode.bm25)
            assert hits and hits[0].doc_id == doc_id, f"{doc_id} is stored but not searchable by {key}"
            assert engine.document(doc_id) is not None
            assert engine.document(doc_id).text[hits[0].start : hits[0].end] == hits[0].text  # type: ignore[union-attr]
        for i in range(holds):
            kind, doc_id, _ = operation(i)
            if kind == "delete" and doc_id not in live:
                for version in "ab":
                    hits = engine.search(word(int(doc_id.split("-")[1]), version), 3, Mode.hybrid)
                    assert all(h.doc_id != doc_id for h in hits), f"deleted {doc_id} came back"
        return holds
    finally:
        engine.close()


@pytest.fixture
def index_copy(seed_index: Path, tmp_path: Path) -> Path:
    return copy_index(seed_index, tmp_path / "index")


def test_sigkill_at_random_moments_of_writes_loses_nothing_acknowledged(index_copy: Path, embedder: Embedder):
    assert all(operation_is_valid(i) for i in range(60))
    seeds = {path.stem for path in SEEDS.glob("*.txt")}
    rng = random.Random(11)
    done = 0  # operations the index holds
    acknowledged_total = kills = maintained = 0
    started = time.monotonic()
    while kills < KILLS:
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(index_copy), str(done)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        timer = threading.Timer(rng.uniform(0.05, 1.5), process.send_signal, args=(signal.SIGKILL,))
        timer.start()
        lines = process.stdout.read().split()
        acknowledged = [int(line) for line in lines if line.isdigit()]
        maintained += lines.count("segments")
        timer.join()
        assert process.wait() == -signal.SIGKILL
        kills += 1
        assert acknowledged == list(range(done, done + len(acknowledged))), "the writer ran out of order"
        acknowledged_total += len(acknowledged)
        done = check_index(index_copy, embedder, seeds, done + len(acknowledged))
    assert acknowledged_total >= KILLS, f"only {acknowledged_total} writes in {kills} kills: the test proved little"
    assert maintained > 0, "no seal or merge finished between kills: the test proved nothing about segments"
    summary = (
        f"{kills} SIGKILLs, {acknowledged_total} writes acknowledged, {maintained} seals or merges completed "
        f"(and others cut short), {done} operations held, 0 writes lost, {time.monotonic() - started:.0f} s"
    )
    print(summary)
    if REPORT:
        Path(REPORT).write_text(
            "# Crash harness\n\n`make crash`: a writer adding, replacing and deleting documents through the "
            "engine, sealing its vectors into segments every few writes and merging them, killed with SIGKILL at "
            "random moments; after each kill the index is reopened and checked (`verify_index` included)."
            f"\n\n{summary}.\n",
            encoding="utf-8",
        )
