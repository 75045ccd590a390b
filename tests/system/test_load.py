"""A short run of the load test with live writes (bench/load.py; `make load` runs the long one)."""

from __future__ import annotations

from pathlib import Path

from bench.load import Lifecycle, Observation, Run, main, violations


def test_searches_during_writes_and_a_reindex_all_succeed_and_see_every_write(seed_index: Path, capsys):
    args = ["--searches", "1500", "--clients", "16", "--index", str(seed_index), "--reindex-rounds", "1"]
    assert main([*args, "--max-seconds", "240"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert '"failed": 0' in out and '"violations": []' in out and '"reindex_runs": 1' in out


def test_the_check_catches_a_missed_write():
    """The consistency check itself: an observation contradicting an acknowledged write is reported."""
    run = Run(
        lifecycles={"a": Lifecycle(added=1.0, updated=2.0), "b": Lifecycle(added=1.0, delete_sent=3.0, deleted=4.0)}
    )
    run.observations = [
        Observation("a", start=1.5, end=1.6, found=False, version=0),  # after the add: must be found
        Observation("a", start=2.5, end=2.6, found=True, version=1),  # after the update: must be version 2
        Observation("b", start=4.5, end=4.6, found=True, version=2),  # after the delete: must be gone
        Observation("b", start=2.0, end=3.5, found=False, version=0),  # overlaps the delete: either is fine
        Observation("a", start=0.5, end=1.2, found=False, version=0),  # started before the ack: either is fine
    ]
    found = violations(run)
    assert len(found) == 3 and "missing" in found[0] and "version 1" in found[1] and "after its delete" in found[2]
