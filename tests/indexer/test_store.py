"""The store: record file, BM25 index on tantivy, live view; replay, tombstones, migration, verification, backup."""

from __future__ import annotations

import logging
import math
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import bm25s
import numpy as np
import pytest
import Stemmer
import tantivy
from fastapi.testclient import TestClient

from indexer.collection import API_SOURCE
from indexer.model.embedding import Embedder
from indexer.store import bm25 as bm25_module
from indexer.store.bm25 import APPLIED_FILE, BM25_DIR
from indexer.store.legacy import read_legacy
from indexer.store.maintenance import backup, verify_index
from indexer.store.records import RECORDS_FILE, DiskFullError
from indexer.store.store import FORMAT_VERSION, NoIndexError, Store, StoreError
from indexer.text.documents import Document
from indexer.text.lexical import bm25_texts, document_acronyms, mark_acronyms, term_id
from service.api.app import create_app
from service.engine import Engine
from service.search.filters import SearchFilter
from service.search.retrieval import Mode
from service.settings import Settings
from service.startup import ModelMismatchError, prepare_index
from tests.copies import copy_index

ROOT = Path(__file__).resolve().parents[2]
FORMAT_2 = Path(__file__).resolve().parents[1] / "data" / "format2-seeds"
KEY = "store-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
QUESTIONS = [
    "how many US troops were sent",
    "who is the russian foreign minister",
    "when did IS take control of raqqa",
    "Tabqa dam",
    "what did turkey say about the kurdish fighters",
]


@pytest.fixture
def index_copy(seed_index: Path, tmp_path: Path) -> Path:
    return copy_index(seed_index, tmp_path / "index")


@pytest.fixture
def writable(index_copy: Path, embedder: Embedder) -> Engine:
    return Engine.load(Settings(index=index_copy, api_key=KEY), embedder=embedder)


def ranking(engine: Engine, mode: Mode = Mode.hybrid) -> list[list[tuple[str, int, int]]]:
    return [[(h.doc_id, h.start, h.end) for h in engine.search(q, 5, mode)] for q in QUESTIONS]


def test_the_record_file_holds_everything_and_a_reopened_view_equals_the_live_one(writable: Engine):
    writable.add_documents([Document(doc_id="extra", text="Cranes at the harbour were idle.", source=API_SOURCE)])
    writable.delete_document("004_6853935bbb664345")
    live = writable.view
    store = Store.open(writable.index_dir)
    try:
        reopened = store.load()
        assert store.settings.model == writable.embedder.info
        assert store.records.meta("format_version") == str(FORMAT_VERSION)
    finally:
        store.close()
    assert [d.doc_id for d in reopened.live_documents()] == [d.doc_id for d in live.live_documents()]
    assert reopened.dead_passages == 0 and live.dead_passages > 0, "a reopened view holds live rows only"
    alive = np.flatnonzero(live.passage_alive)
    assert np.array_equal(
        reopened.passage_vectors.take(np.arange(reopened.num_passages)), live.passage_vectors.take(alive)
    )
    assert [reopened.passage_text(r) for r in range(reopened.num_passages)] == [live.passage_text(r) for r in alive]
    for row in range(reopened.num_passages):
        document = reopened.passage_document(row)
        span = reopened.passage_span(row)
        assert document.text[span.start : span.end] == reopened.passage_text(row)
        for sentence in reopened.sentence_rows_of(row):
            inner = reopened.sentence_span(int(sentence))
            assert span.start <= inner.start < inner.end <= span.end
    assert reopened.live_terms == live.live_terms


def test_bm25_scores_equal_bm25s_over_the_same_passages(engine: Engine):
    """tantivy finds the candidates, Citeline scores them: the ranking is bm25s's (Lucene BM25, k1 0.9)."""
    view, config = engine.view, engine.analyzer.config
    texts = [d.text for d in view.documents]
    acronyms = document_acronyms(texts, config)
    spans = [
        (int(view.passage_docs[r]), int(view.passage_starts[r]), int(view.passage_ends[r]))
        for r in range(view.num_passages)
    ]
    passages = [mark_acronyms(t) for t in bm25_texts(texts, spans, config, acronyms)]
    reference = bm25s.BM25(k1=config.k1, b=config.b)
    reference.index(
        bm25s.tokenize(passages, stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False),
        show_progress=False,
    )
    retriever = engine.state.retriever
    for question in QUESTIONS:
        query = retriever._query(question)
        expected = reference.get_scores(engine.analyzer.query_terms(question))
        ours = retriever.bm25_scores(np.arange(view.num_passages), query)
        assert ours == pytest.approx(expected, rel=1e-4, abs=1e-4)
        top = retriever._bm25(query, 10, None)
        assert list(top) == [int(r) for r in np.argsort(-expected, kind="stable")[:10] if expected[r] > 0][: len(top)]


def test_a_write_the_bm25_index_missed_is_replayed_once(writable: Engine, embedder: Embedder):
    from indexer.build import prepare

    store = writable.store
    (record,) = prepare(
        [Document(doc_id="late", text="Workers at the zqharbour loaded grain.", source=API_SOURCE)],
        embedder,
        store.settings.chunker,
        store.settings.bm25,
    )
    store.records.apply([record], [])  # stored, then "killed" before the BM25 index took it
    writable.close()
    restarted = Engine.load(Settings(index=writable.index_dir), embedder=embedder)
    assert restarted.search("zqharbour", 1, Mode.bm25)[0].doc_id == "late"
    passages = restarted.view.bm25.num_docs  # type: ignore[union-attr]
    (restarted.index_dir / BM25_DIR / APPLIED_FILE).write_text("0\n")  # replay the whole log again
    restarted.close()
    again = Engine.load(Settings(index=writable.index_dir), embedder=embedder)
    assert again.view.bm25.num_docs == passages, "replay deletes before it adds: nothing doubled"  # type: ignore[union-attr]
    assert verify_index(again.index_dir).bm25_passages == passages


def test_a_lost_bm25_index_is_rebuilt_from_the_record_file(index_copy: Path, embedder: Embedder, engine: Engine):
    shutil.rmtree(index_copy / BM25_DIR)
    rebuilt = Engine.load(Settings(index=index_copy), embedder=embedder)
    assert ranking(rebuilt, Mode.bm25) == ranking(engine, Mode.bm25)


def test_a_bm25_index_without_document_entries_is_rebuilt_with_them(
    index_copy: Path, embedder: Embedder, engine: Engine
):
    """Indexes written before the document entries: served as they are, rebuilt by the first catch-up."""
    store = Store.open(index_copy)
    keys = store.records.keys()
    stored = store.records.passage_terms(keys)
    seq = store.records.last_seq()
    store.close()
    shutil.rmtree(index_copy / BM25_DIR)
    (index_copy / BM25_DIR).mkdir()
    old = tantivy.Index(bm25_module._schema(documents=False), path=str(index_copy / BM25_DIR))
    writer = old.writer(num_threads=1)
    for key, passages in stored.items():
        for ordinal, terms in enumerate(passages):
            entry = tantivy.Document()
            entry.add_text("terms", " ".join(format(t, "x") for t in terms))
            entry.add_unsigned("doc", key)
            entry.add_unsigned("ord", ordinal)
            writer.add_document(entry)
    writer.commit()
    writer.wait_merging_threads()
    (index_copy / BM25_DIR / APPLIED_FILE).write_text(f"{seq}\n")

    reopened = Store.open(index_copy)
    assert reopened.bm25.outdated
    before = reopened.bm25.searcher()
    assert not before.has_documents and before.document_idf(["raqqa"]) is None
    reopened.close()
    rebuilt = Engine.load(Settings(index=index_copy), embedder=embedder)
    searcher = rebuilt.view.bm25
    assert searcher is not None and searcher.has_documents
    assert searcher.num_docs == sum(len(p) for p in stored.values()), "document entries are not passages"
    assert searcher.num_documents == len(keys)
    assert ranking(rebuilt, Mode.bm25) == ranking(engine, Mode.bm25)
    # Document frequency counts each document once, however many of its passages hold the term.
    analyzer = rebuilt.retriever().analyzer
    (raqqa,) = analyzer.terms("Raqqa")
    holding = sum(any(term_id(raqqa) in terms for terms in passages) for passages in stored.values())
    expected = math.log1p((len(keys) - holding + 0.5) / (holding + 0.5))
    assert searcher.document_idf([raqqa]) == pytest.approx([expected])
    assert searcher.idf([raqqa])[0] != pytest.approx(expected), "passage idf differs on these articles"


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize(
    "search_filter",
    [None, SearchFilter(doc_ids=frozenset({"gone", "001_2c0b17beeba9964b"})), SearchFilter(source_prefix="api")],
)
def test_deleted_and_replaced_passages_never_come_back(
    writable: Engine, mode: Mode, search_filter: SearchFilter | None
):
    writable.add_documents(
        [
            Document(doc_id="gone", text="The zqcormorant census counted 77 birds.", source=API_SOURCE),
            Document(
                doc_id="kept", text="The zqheron census counted 12 birds; an old zqplover note.", source=API_SOURCE
            ),
        ]
    )
    writable.delete_document("gone")
    writable.put_document(Document(doc_id="kept", text="The zqheron census counted 14 birds.", source=API_SOURCE))
    for question in ("zqcormorant census", "how many birds did the census count", "zqplover"):
        for hit in writable.search(question, 20, mode, search_filter=search_filter):
            assert hit.doc_id != "gone"
            assert "zqplover" not in hit.text and "12 birds" not in hit.text, "the replaced version came back"
    hits = writable.search("zqheron census", 5, mode, search_filter=search_filter)
    if search_filter is None or not search_filter.doc_ids:
        assert hits and hits[0].doc_id == "kept" and "14 birds" in hits[0].text
    else:
        assert all(h.doc_id in search_filter.doc_ids for h in hits), "the filter holds with tombstones too"


def test_a_full_disk_refuses_the_write_with_507_and_loses_nothing(index_copy: Path, embedder: Embedder):
    settings = Settings(index=index_copy, api_key=KEY)
    engine = Engine.load(settings, embedder=embedder)
    with TestClient(create_app(settings, engine=engine)) as client:
        before = client.get("/documents").json()
        db = engine.store.records._db
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
        big = {"doc_id": "big", "text": "A long report about the harbour. " * 2000}
        response = client.post("/documents", json=big, headers=AUTH)
        assert response.status_code == 507 and "full" in response.json()["detail"]
        assert client.get("/documents").json() == before
        assert client.get("/search", params={"q": "how many US troops were sent"}).status_code == 200
        db.execute(f"PRAGMA max_page_count = {pages * 1000}")
        assert client.post("/documents", json=big, headers=AUTH).status_code == 201
    with pytest.raises(DiskFullError):
        raise DiskFullError("x")


def test_damage_is_reported_naming_the_file(index_copy: Path, embedder: Embedder):
    assert verify_index(index_copy).documents == 5
    with sqlite3.connect(index_copy / RECORDS_FILE) as db:
        db.execute("UPDATE passages SET end = 10000000 WHERE ord = 0")
    with pytest.raises(StoreError, match=r"records.sqlite: passage .* lies outside its text"):
        verify_index(index_copy)
    (index_copy / RECORDS_FILE).write_bytes(b"not a database" * 100)
    with pytest.raises(Exception, match=r"records\.sqlite"):
        Store.open(index_copy)


def test_missing_index_newer_format_and_other_model_are_clear_errors(tmp_path: Path, index_copy: Path, embedder):
    with pytest.raises(NoIndexError, match="citeline index"):
        Store.open(tmp_path / "nothing")
    with sqlite3.connect(index_copy / RECORDS_FILE) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'format_version'")
    with pytest.raises(StoreError, match="newer than this build reads"):
        Store.open(index_copy)
    with sqlite3.connect(index_copy / RECORDS_FILE) as db:
        db.execute(f"UPDATE meta SET value = '{FORMAT_VERSION}' WHERE key = 'format_version'")
        db.execute("UPDATE meta SET value = json_set(value, '$.fingerprint', 'other') WHERE key = 'model'")
    with pytest.raises(ModelMismatchError, match="CITELINE_MODEL"):
        Engine.load(Settings(index=index_copy), embedder=embedder)


def test_a_format_2_index_of_the_previous_release_migrates_without_re_embedding(
    tmp_path: Path, embedder: Embedder, engine: Engine, caplog: pytest.LogCaptureFixture
):
    index = Path(shutil.copytree(FORMAT_2, tmp_path / "old"))
    old = read_legacy(index)
    with pytest.raises(StoreError, match="citeline migrate"):
        Store.open(index)
    with pytest.raises(StoreError, match="citeline migrate"):
        Engine.load(Settings(index=index), embedder=embedder)  # loading only loads: it says what to do
    with caplog.at_level(logging.INFO):
        settings = Settings(index=index)
        migrated = Engine.load(settings, embedder=prepare_index(settings, embedder))  # as `serve` starts
    assert any("migrated the format 2 index" in r.getMessage() for r in caplog.records)
    view = migrated.view
    assert [d.doc_id for d in view.live_documents()] == [d.doc_id for d in old.documents]
    assert np.array_equal(view.passage_vectors.matrix(), old.passage_vectors), "the stored vectors, not new ones"
    assert np.array_equal(view.sentence_vectors.matrix(), old.sentence_vectors)
    assert ranking(migrated) == ranking(engine), "answers as an index built today"
    assert verify_index(index).documents == 5
    assert (index / "snapshots").is_dir(), "the old snapshots stay until the user deletes them"


def test_cli_migrate_verify_and_backup(tmp_path: Path, index_copy: Path, engine: Engine, embedder: Embedder):
    old = Path(shutil.copytree(FORMAT_2, tmp_path / "old"))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=ROOT, capture_output=True, text=True)

    done = cli("migrate", "--index", str(old))
    assert done.returncode == 0 and "migrated 5 documents" in done.stdout, done.stderr
    assert "already format 3" in cli("migrate", "--index", str(old)).stdout
    verified = cli("index", "--verify", str(old))
    assert verified.returncode == 0 and "5 documents" in verified.stdout
    backed = cli("backup", str(tmp_path / "copy"), "--index", str(index_copy))
    assert backed.returncode == 0 and "ok:" in backed.stdout, backed.stderr
    restored = Engine.load(Settings(index=tmp_path / "copy"), embedder=embedder)
    assert ranking(restored) == ranking(engine)
    assert cli("backup", str(tmp_path / "copy"), "--index", str(index_copy)).returncode == 2, "never overwrites"
    with sqlite3.connect(index_copy / RECORDS_FILE) as db:
        db.execute("UPDATE sentences SET start = -5 WHERE ord = 0")
    damaged = cli("index", "--verify", str(index_copy))
    assert damaged.returncode == 1 and "lies outside its text" in damaged.stderr


def test_backup_of_a_live_index_while_it_writes(writable: Engine, tmp_path: Path, embedder: Embedder):
    writable.add_documents([Document(doc_id="before", text="Written before the backup.", source=API_SOURCE)])
    report = backup(writable.index_dir, tmp_path / "backup")
    writable.add_documents([Document(doc_id="after", text="Written after the backup.", source=API_SOURCE)])
    assert report.documents == 6
    copy = Engine.load(Settings(index=tmp_path / "backup"), embedder=embedder)
    assert "before" in copy.view.doc_rows and "after" not in copy.view.doc_rows
    assert math.isfinite(copy.search("written before the backup", 1, Mode.hybrid)[0].score)


def test_a_served_index_repairs_what_a_dead_writer_left_behind(writable: Engine, embedder: Embedder):
    """Another process stored a write and died before its BM25 commit: the server's next refresh replays it."""
    from indexer.build import prepare

    other = Store.open(writable.index_dir)
    try:
        (record,) = prepare(
            [Document(doc_id="orphan", text="The zqlighthouse keeper wrote the log.", source=API_SOURCE)],
            embedder,
            other.settings.chunker,
            other.settings.bm25,
        )
        other.records.apply([record], [])  # ... and the process is killed here
    finally:
        other.close()
    assert writable.refresh()
    assert writable.not_ready_because() is None
    assert writable.search("zqlighthouse keeper", 1, Mode.bm25)[0].doc_id == "orphan"


def test_an_index_folder_that_cannot_be_written_is_a_clear_error(tmp_path: Path):
    from indexer.store.store import writer_lock

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot be written"), writer_lock(blocker / "index"):
        pass
