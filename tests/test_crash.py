"""SIGKILL at random points of index writes (`citeline index`'s path) never leaves an unloadable index."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from indexer.snapshot import CURRENT_FILE, SNAPSHOTS_DIR, current_snapshot_path, load_snapshot, verify_index

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"

# Re-indexes the sources in a loop, alternating between the seeds and the seeds plus extra documents, as
# repeated `citeline index` runs do (same function, one model load): each round writes a new snapshot.
LOOP_WRITER = textwrap.dedent(
    """
    import sys
    from dataclasses import replace
    from pathlib import Path
    from service.engine import index_sources, load_embedder
    from service.settings import Settings

    index, with_extra, without_extra, parity = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    settings = Settings(index=index)
    embedder = load_embedder(settings)
    print("ready", flush=True)
    for round in range(parity, parity + 1000):
        sources = with_extra if round % 2 == 0 else without_extra
        index_sources(replace(settings, sources=sources), embedder, show_progress=False)
        print((index / "CURRENT").read_text().strip(), flush=True)
    """
)


def extra_documents(folder: Path, count: int = 4) -> Path:
    path = folder / "extra.jsonl"
    lines = [
        json.dumps(
            {
                "id": f"extra-{i}",
                "title": f"Harbour log {i}",
                "text": f"Day {i}: the harbour cranes were idle. "
                f"Workers waited for the ship from Lisbon, delayed by storms for the {i}th time.",
            }
        )
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def index_copy(seed_index: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(seed_index, tmp_path / "index"))


def leftovers(index: Path) -> str:
    """Where the kill landed, as far as the folder shows: inside a snapshot write, at the pointer swap, or else."""
    if list((index / SNAPSHOTS_DIR).glob(".tmp-*")):
        return "staging"
    if list(index.glob(f".{CURRENT_FILE}.*.tmp")):
        return "pointer"
    return "between"


def test_sigkill_at_random_points_of_repeated_reindexing(index_copy: Path, tmp_path: Path):
    seeds = {d.doc_id for d in load_snapshot(index_copy).documents}
    extra = extra_documents(tmp_path)
    with_extra = f"{SEEDS},{extra}"
    collections = {0: seeds | {f"extra-{i}" for i in range(4)}, 1: seeds}  # by round parity
    rng = random.Random(11)
    rounds_done = 0  # rounds committed; the collection of round r is collections[r % 2], the seeds before any
    previous = current_snapshot_path(index_copy).name
    landed: list[str] = []
    for _ in range(10):
        process = subprocess.Popen(
            [sys.executable, "-c", LOOP_WRITER, str(index_copy), with_extra, str(SEEDS), str(rounds_done % 2)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        timer = threading.Timer(rng.uniform(0.0, 0.8), process.send_signal, args=(signal.SIGKILL,))
        timer.start()
        acknowledged = process.stdout.read().split()
        timer.join()
        assert process.wait() == -signal.SIGKILL
        landed.append(leftovers(index_copy))

        report = verify_index(index_copy)  # every file checked against the manifest, counts consistent
        live = current_snapshot_path(index_copy).name
        ids = {d.doc_id for d in load_snapshot(index_copy).documents}
        assert report.documents == len(ids)
        last = acknowledged[-1] if acknowledged else previous
        rounds_done += len(acknowledged)
        assert live >= last, "an acknowledged write was lost"
        if live != last:  # killed after CURRENT moved, before the writer said so: that round is whole
            rounds_done += 1
        assert ids == collections[(rounds_done - 1) % 2], "a snapshot is one whole collection, never a mix"
        previous = live
    assert rounds_done >= 3, f"the writer was killed before it wrote anything ({landed}): the test proved nothing"
    print(f"kills landed: {landed}; rounds completed: {rounds_done}")
    # The next writer cleans up after the killed ones and the index goes on.
    subprocess.run(
        [sys.executable, "-m", "service.cli", "index", str(SEEDS), "--index", str(index_copy), "--quiet"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    assert {d.doc_id for d in load_snapshot(index_copy).documents} == seeds
    assert not list((index_copy / SNAPSHOTS_DIR).glob(".tmp-*"))


def test_sigkill_of_the_citeline_index_command(index_copy: Path, tmp_path: Path):
    """The real command, killed while it loads, embeds and writes: the index stays whole, before or after."""
    extra = extra_documents(tmp_path, count=400)  # a few seconds of embedding: kills land inside the run
    rng = random.Random(5)
    base = [sys.executable, "-m", "service.cli", "index", "--index", str(index_copy), "--quiet"]
    outcomes = []
    for run in range(6):
        # Alternate what is indexed, so that every run has a new snapshot to write.
        sources = [str(SEEDS), str(extra)] if run % 2 == 0 else [str(SEEDS)]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        process = subprocess.Popen([*base, *sources], cwd=ROOT, **quiet)
        try:
            process.wait(timeout=rng.uniform(0.8, 3.5))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
        outcomes.append(process.wait())
        assert verify_index(index_copy).documents in (5, 405), "the seeds, or the seeds and all the extra ones"
        if outcomes.count(-signal.SIGKILL) >= 2:
            break
    assert -signal.SIGKILL in outcomes, f"every run finished before its kill ({outcomes}): the test proved nothing"
    assert subprocess.run([*base[:4], "--verify", str(index_copy)], cwd=ROOT, capture_output=True).returncode == 0
