"""Micro-batching of query encoding: right vector for every caller, batches under concurrency, errors passed on."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.search.batching import BatchingEncoder


class SlowEncoder:
    """Encodes a text as [len(text), first char code]; records each batch; slow enough for queues to form."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.batches: list[list[str]] = []
        self.threads: list[int] = []
        self.seconds = seconds
        self.lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        with self.lock:
            self.batches.append(list(texts))
            self.threads.append(threading.get_ident())
        time.sleep(self.seconds)
        if any(t == "boom" for t in texts):
            raise RuntimeError("model failed")
        return np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32)


def test_each_caller_gets_its_own_vector_and_concurrent_calls_share_batches():
    encoder = SlowEncoder()
    batching = BatchingEncoder(encoder, max_batch=8)
    questions = [chr(ord("a") + i % 26) * (i + 1) for i in range(40)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        vectors = list(pool.map(batching.encode_query, questions))
    for question, vector in zip(questions, vectors, strict=True):
        assert vector.tolist() == [len(question), ord(question[0])]
    assert sorted(t for batch in encoder.batches for t in batch) == sorted(questions)
    assert max(len(b) for b in encoder.batches) > 1, "concurrent questions were encoded one by one"
    assert max(len(b) for b in encoder.batches) <= 8


def test_a_lone_question_is_encoded_alone_without_waiting():
    encoder = SlowEncoder(seconds=0.0)
    batching = BatchingEncoder(encoder)
    for question in ("one", "two", "three"):
        assert batching.encode_query(question).tolist() == [len(question), ord(question[0])]
    assert encoder.batches == [["one"], ["two"], ["three"]]
    assert set(encoder.threads) == {threading.get_ident()}, "a lone question must not switch threads"


def test_under_heavy_concurrency_every_question_is_encoded_exactly_once():
    encoder = SlowEncoder(seconds=0.001)
    batching = BatchingEncoder(encoder, max_batch=4)
    questions = [f"{chr(ord('a') + i % 26)}{i}" for i in range(300)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        vectors = list(pool.map(batching.encode_query, questions))
    assert [v.tolist() for v in vectors] == [[len(q), ord(q[0])] for q in questions]
    assert sorted(t for batch in encoder.batches for t in batch) == sorted(questions)
    assert batching.encode_query("last").tolist() == [4, ord("l")], "the encoder is idle and usable afterwards"


def test_an_encoder_error_reaches_the_callers_and_the_worker_survives():
    batching = BatchingEncoder(SlowEncoder(seconds=0.0))
    with pytest.raises(RuntimeError, match="model failed"):
        batching.encode_query("boom")
    assert batching.encode_query("fine").tolist() == [4, ord("f")]


def test_engine_results_are_the_same_with_batching(embedder, seed_index):
    from service.engine import Engine
    from service.search.retrieval import Mode
    from service.settings import Settings

    plain = Engine.load(Settings(index=seed_index, batch_queries=False), embedder=embedder)
    batched = Engine.load(Settings(index=seed_index, batch_queries=True), embedder=embedder)
    question = "how many US troops were sent"
    assert [(h.doc_id, h.start) for h in batched.search(question, 5, Mode.hybrid)] == [
        (h.doc_id, h.start) for h in plain.search(question, 5, Mode.hybrid)
    ]
