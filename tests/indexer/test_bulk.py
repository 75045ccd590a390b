"""Bulk indexing: an interrupted run (Ctrl-C or SIGKILL) resumes from what it stored, without embedding it
again, and ends where an uninterrupted run ends; its progress reads well in a log that is not a terminal."""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import indexer.build as build
from indexer.build import prepare, sync_index
from indexer.model.embedding import Embedder
from indexer.progress import Progress, format_seconds
from indexer.store.store import Store
from indexer.text.chunking import ChunkerConfig
from indexer.text.documents import load_documents, read_sources
from indexer.text.lexical import BM25Config
from tests.server import ROOT

SEEDS = ROOT / "seeds"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed articles cut into their paragraphs, one file each: a few dozen small documents."""
    folder = tmp_path_factory.mktemp("paragraphs")
    for path in sorted(SEEDS.glob("*.txt")):
        paragraphs = [p for p in path.read_text(encoding="utf-8").split("\n") if len(p.split()) >= 12]
        for number, paragraph in enumerate(paragraphs):
            (folder / f"{path.stem}-{number:02d}.txt").write_text(paragraph, encoding="utf-8")
    return folder


def contents(index: Path) -> tuple[list[tuple[str, str, tuple]], np.ndarray, np.ndarray]:
    """Every live document with its passage and sentence spans, and the vectors in document order."""
    store = Store.open(index)
    try:
        view = store.load()
    finally:
        store.close()
    rows = {d.doc_id: r for d, r in ((d, view.doc_rows[d.doc_id]) for d in view.live_documents())}
    described, passages, sentences = [], [], []
    for doc_id in sorted(rows):
        row = rows[doc_id]
        first = int(view.doc_passages[row])
        count = view.passage_count(doc_id)
        spans = tuple(view.passage_span(r) for r in range(first, first + count))
        described.append((doc_id, view.documents[row].text, spans))
        passages.append(view.passage_vectors.take(np.arange(first, first + count)))
        own = np.flatnonzero(view.sentence_docs == row)
        sentences.append(view.sentence_vectors.take(own))
    return described, np.vstack(passages), np.vstack(sentences)


class Interrupted(Embedder):
    """The real model, stopped by a Ctrl-C on its `calls`-th encoding, counting the texts it embeds."""

    def __init__(self, embedder: Embedder, calls: int | None) -> None:
        self.__dict__.update(embedder.__dict__)
        self._bulk = None  # a bulk run's twin is a copy of this one, so it stops and counts too
        self._left = calls
        self.texts = 0

    def encode(self, texts, show_progress=False):  # type: ignore[no-untyped-def]
        if self._left is not None:
            self._left -= 1
            if self._left == 0:
                raise KeyboardInterrupt
        self.texts += len(texts)
        return super().encode(texts, show_progress)


@pytest.mark.parametrize("bulk", [False, True], ids=["fp32", "int8-bulk-run"])
def test_a_run_stopped_by_ctrl_c_resumes_and_ends_as_an_uninterrupted_one(
    corpus: Path, tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch, bulk: bool
):
    """Also for a bulk run on int8, whose vectors depend on their batch: a resumed run cuts the same batches."""
    monkeypatch.setattr(build, "BATCH_DOCUMENTS", 4)
    monkeypatch.setattr(embedder, "bulk_characters", 0 if bulk else 10**12)
    documents = load_documents([corpus])
    by_id = {d.doc_id: d for d in documents}
    assert len(documents) > 12
    whole = tmp_path / "whole"
    sync_index(documents, whole, embedder, show_progress=False)

    resumed = tmp_path / "resumed"
    # Each batch encodes its passages, then its sentences: the 5th call is the third batch's passages.
    with pytest.raises(KeyboardInterrupt):
        sync_index(documents, resumed, Interrupted(embedder, calls=5), show_progress=False)
    store = Store.open(resumed)
    try:
        assert sorted(store.records.content_hashes()) == sorted(d.doc_id for d in documents[:8])
    finally:
        store.close()

    counting = Interrupted(embedder, calls=None)
    report = sync_index(documents, resumed, counting, show_progress=False)
    assert report.reused_documents == 8 and report.documents == len(documents)
    first_two = sync_index(documents[:8], tmp_path / "first-two", embedder, show_progress=False)
    assert report.embedded_passages == report.passages - first_two.passages  # nothing stored was embedded again

    expected, expected_passages, expected_sentences = contents(whole)
    got, got_passages, got_sentences = contents(resumed)
    assert got == expected
    np.testing.assert_allclose(got_passages, expected_passages, atol=1e-5)
    np.testing.assert_allclose(got_sentences, expected_sentences, atol=1e-5)
    # Which encoder wrote them: fp32 below the bulk size, int8 from it (close to fp32, not equal).
    chunker = ChunkerConfig(token_limit=embedder.token_limit)
    fp32 = prepare([by_id[got[0][0]]], embedder, chunker, BM25Config())[0].passage_vectors
    first = len(fp32)
    assert np.allclose(got_passages[:first], fp32, atol=1e-5) is not bulk
    assert np.einsum("ij,ij->i", got_passages[:first], fp32).min() > 0.98


CHILD = textwrap.dedent(
    """
    import sys
    import indexer.build, indexer.progress
    indexer.build.BATCH_DOCUMENTS = 2
    indexer.progress.LOG_EVERY_SECONDS = 0  # a line after every batch: the parent kills on one
    from service.cli import main
    sys.exit(main(["index", sys.argv[1], "--index", sys.argv[2]]))
    """
)


def run_index(corpus: Path, index: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "index", str(corpus), "--index", str(index)],
        cwd=ROOT,
        env={**os.environ, "CITELINE_LOG_LEVEL": "INFO"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_a_killed_index_run_resumes_from_what_it_stored(corpus: Path, tmp_path: Path, embedder: Embedder):
    index = tmp_path / "index"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(corpus), str(index)],
        cwd=ROOT,
        env={**os.environ, "CITELINE_LOG_LEVEL": "INFO"},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stderr is not None
    progress = re.compile(r"indexing: (\d+)/(\d+) documents")
    try:
        for line in child.stderr:
            found = progress.search(line)
            if found and int(found.group(1)) >= 6:
                child.send_signal(signal.SIGKILL)
                break
        else:
            pytest.fail("the index run ended before it logged its progress")
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    log = run_index(corpus, index)
    stored = re.search(r"(\d+) of (\d+) documents are stored already", log)
    assert stored is not None, log
    reused = re.search(r"indexed (\d+) documents \(\d+ passages, \d+ embedded, (\d+) reused", log)
    assert reused is not None and int(reused.group(2)) == int(stored.group(1)) >= 6, log

    whole = tmp_path / "whole"
    sync_index(load_documents([corpus]), whole, embedder, show_progress=False)
    expected, expected_passages, _ = contents(whole)
    got, got_passages, _ = contents(index)
    assert got == expected
    np.testing.assert_allclose(got_passages, expected_passages, atol=1e-5)


def test_progress_in_a_log_is_lines_with_rate_and_time_left(corpus: Path, tmp_path: Path):
    log = run_index(corpus, tmp_path / "index")  # stderr is a pipe, not a terminal
    assert "\r" not in log
    lines = [line for line in log.splitlines() if "indexing:" in line]
    assert lines, log
    documents = len(list(corpus.glob("*.txt")))
    assert re.search(rf"indexing: {documents}/{documents} documents, [\d,]+ passages \([\d.]+ passages/s\)", lines[-1])


def test_progress_figures(caplog: pytest.LogCaptureFixture):
    stream = io.StringIO()
    progress = Progress(10, stream=stream, every=0)
    assert not progress.interactive  # a StringIO is no terminal
    with caplog.at_level(logging.INFO, logger="citeline.progress"):
        progress.update(4, 30)
        progress.update(6, 50)
        progress.close()
    assert stream.getvalue() == ""  # nothing drawn: the figures went to the log
    first, *_, last = [r for r in caplog.records if r.name == "citeline.progress"]
    assert "4/10 documents, 30 passages" in first.getMessage() and "left" in first.getMessage()
    assert "10/10 documents, 80 passages" in last.getMessage()
    assert last.fields["passages"] == 80 and last.fields["eta_s"] == 0  # type: ignore[attr-defined]
    bar = io.StringIO()
    drawn = Progress(3, stream=bar, interactive=True)
    drawn.update(3, 9)
    drawn.close()
    assert "3/3" in bar.getvalue() and "passages/s" in bar.getvalue()
    assert Progress(0, stream=io.StringIO(), interactive=True).enabled is False
    assert [format_seconds(s) for s in (5, 65, 3725)] == ["5s", "1m05s", "1h02m"]


def test_reading_a_folder_shows_files_read_and_failed(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """Extraction can take minutes before anything is embedded, so reading files has its own progress."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(3):
        (folder / f"note{i}.txt").write_text(f"Note {i} about the river crossing.", encoding="utf-8")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n truncated")
    with caplog.at_level(logging.INFO, logger="citeline.progress"):
        loaded = read_sources([folder], show_progress=True)
    assert len(loaded.documents) == 3 and len(loaded.failures) == 1
    lines = [r for r in caplog.records if r.name == "citeline.progress"]
    assert lines, "no progress was logged"
    assert "reading: 4/4 files, 1 failed" in lines[-1].getMessage()
    assert lines[-1].fields["files"] == 4 and lines[-1].fields["failed"] == 1  # type: ignore[attr-defined]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="citeline.progress"):
        read_sources([folder])
    assert not [r for r in caplog.records if r.name == "citeline.progress"]
