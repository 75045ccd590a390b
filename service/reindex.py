"""Shadow reindex: a collection built again with new settings beside the live one, from its stored documents,
while the live one goes on serving reads and writes; caught up with the writes made meanwhile; evaluated
against the live one on the collection's own questions; and switched in only if no chosen metric drops by
more than a threshold. The index it replaces is kept (`.previous-<name>` beside it) for a rollback.

The switch holds the live collection's write turn: the last writes are copied over, the folders are
renamed (live → previous, shadow → live) and a new engine is loaded, all before another write starts.
Searches never wait: they finish on the view they started on. A write that was waiting for its turn on the
engine replaced meanwhile is refused with a 503 (nothing written) and goes to the new one when retried.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from indexer.build import open_or_create
from indexer.errors import CitelineError
from indexer.model.embedding import Embedder
from indexer.store.originals import Originals
from indexer.store.store import Store, writer_lock
from indexer.text.documents import Document
from indexer.text.lexical import BM25Config
from service.engine import Engine
from service.evaluation.evaluate import Dataset, evaluate, load_qa
from service.search.retrieval import Mode
from service.settings import Settings
from service.startup import chunker_config

logger = logging.getLogger(__name__)
EVAL_FILE = "eval.jsonl"
SWITCH_FILE = "switched.json"  # in the previous index: the live log's entry at the switch, for a rollback
SHADOW, PREVIOUS = ".shadow-", ".previous-"
BATCH = 64
METRICS = ("ndcg@10", "recall@1", "recall@3", "recall@5", "recall@10", "recall@100", "mrr@10")
RETIRE_AFTER_SECONDS = 60.0  # searches in flight on a replaced engine finish well within this


class ReindexError(CitelineError):
    """A reindex or rollback that cannot be done as asked (nothing was changed)."""


@dataclass(frozen=True)
class Plan:
    """What a reindex changes and how its result is judged."""

    passage_tokens: int | None = None
    overlap_sentences: int | None = None
    metrics: tuple[str, ...] = ("ndcg@10", "recall@5")
    threshold: float = 0.005
    force: bool = False


@dataclass
class Report:
    """How a reindex went, as its job shows it."""

    phase: str = "queued"  # building, catching up, evaluating, switched, refused
    settings: dict[str, int] = field(default_factory=dict)
    before: dict[str, float] | None = None
    after: dict[str, float] | None = None
    decision: str | None = None  # "switched", "forced", "refused"
    reasons: list[str] = field(default_factory=list)
    seconds: float | None = None


def drops(before: dict[str, float], after: dict[str, float], metrics: Sequence[str], threshold: float) -> list[str]:
    """Why `after` may not replace `before`: each chosen metric that fell by more than `threshold`."""
    return [
        f"{m} fell from {before[m]:.4f} to {after[m]:.4f} (by {before[m] - after[m]:.4f}, more than {threshold})"
        for m in metrics
        if before[m] - after[m] > threshold
    ]


def home_of(engine: Engine) -> Path:
    return engine.index_dir


def previous_of(home: Path) -> Path:
    return home.parent / f"{PREVIOUS}{home.name}"


def eval_questions(home: Path) -> Dataset | None:
    """The collection's evaluation questions (`PUT .../eval`), or None when it has none."""
    path = home / EVAL_FILE
    return load_qa(path) if path.is_file() else None


def measure(engine: Engine, dataset: Dataset) -> dict[str, float]:
    """Hybrid retrieval's figures on `dataset`, as `citeline eval` computes them."""
    results = evaluate(engine.state.retriever, dataset, [Mode.hybrid], encode_queries=engine.embedder.encode_queries)
    return {k: round(v, 4) for k, v in results[Mode.hybrid.value].items() if k in METRICS}


def with_originals(documents: list[Document], index_dir: Path) -> list[Document]:
    """The documents with their original files attached, so a write to another store keeps them."""
    originals = Originals(index_dir)
    return [
        replace(d, original=originals.path(d.layout.original)) if d.layout is not None and d.layout.original else d
        for d in documents
    ]


def catch_up(source: Engine, target: Engine, since: int) -> int:
    """Write to `target` what was written to `source` after its log entry `since` (each document's last
    version, or its deletion); the entry caught up to is returned. Reads the record file, not the view, so
    it may run while the source's write turn is held."""
    records = source.store.records
    ops = records.ops_since(since)
    if not ops:
        return since
    last = {op.doc_id: op for op in ops}
    keys = sorted(op.key for op in last.values() if op.action == "add")
    documents = [r.document for r in records.records(keys, vectors=False)] if keys else []
    documents = with_originals(documents, source.index_dir)
    for start in range(0, len(documents), BATCH):
        target.put_documents(documents[start : start + BATCH])
    deleted = [doc_id for doc_id, op in last.items() if op.action == "delete"]
    if deleted:
        target.delete_documents(deleted)
    return ops[-1].seq


def build_shadow(
    live: Engine,
    plan: Plan,
    settings: Settings,
    on_progress: Callable[[int, int], None],
) -> tuple[Engine, Path, int]:
    """A new store beside the live one with `plan`'s chunking, holding the live documents as of one log
    entry, which is returned with its engine and folder."""
    home = home_of(live)
    shadow = home.parent / f"{SHADOW}{home.name}-{uuid.uuid4().hex[:8]}"
    stored = live.store.settings.chunker
    local = replace(
        settings,
        index=shadow,
        passage_tokens=plan.passage_tokens or stored.passage_tokens,
        overlap_sentences=stored.overlap_sentences if plan.overlap_sentences is None else plan.overlap_sentences,
    )
    embedder: Embedder = live.embedder
    try:
        with writer_lock(shadow):
            open_or_create(shadow, embedder, chunker_config(local, embedder), BM25Config()).close()
        state = live.state  # one view: its documents as of its log entry
        since = state.view.seq
        documents = with_originals(list(state.view.live_documents()), home)
        engine = Engine(embedder, Store.open(shadow))
        try:
            for start in range(0, len(documents), BATCH):
                engine.put_documents(documents[start : start + BATCH])
                on_progress(min(start + BATCH, len(documents)), len(documents))
        except BaseException:
            engine.close()
            raise
    except BaseException:
        shutil.rmtree(shadow, ignore_errors=True)
        raise
    return engine, shadow, since


def retire_later(engine: Engine) -> None:
    """Close a replaced engine once the searches that started on it have long finished."""
    timer = threading.Timer(RETIRE_AFTER_SECONDS, engine.close)
    timer.daemon = True
    timer.start()


def write_switch_mark(previous: Path, seq: int) -> None:
    (previous / SWITCH_FILE).write_text(json.dumps({"seq": seq, "at": time.time()}), encoding="utf-8")


def read_switch_mark(previous: Path) -> int:
    try:
        return int(json.loads((previous / SWITCH_FILE).read_text(encoding="utf-8"))["seq"])
    except (OSError, ValueError, KeyError) as error:
        why = f"{previous} has no readable {SWITCH_FILE}: cannot tell which writes to carry back"
        raise ReindexError(why) from error


def swap_folders(home: Path, incoming: Path, outgoing: Path) -> None:
    """`home` goes to `outgoing` (replacing what was there) and `incoming` to `home`, by renames."""
    if outgoing.exists():
        shutil.rmtree(outgoing)
    os.rename(home, outgoing)
    os.rename(incoming, home)
    descriptor = os.open(home.parent, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
