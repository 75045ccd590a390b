"""Opportunistic micro-batching of query encoding: questions that arrive together are encoded together.

One worker thread encodes. A question that finds it idle is encoded at once, alone (no waiting
window, so a lone client pays nothing); questions that arrive while it is busy queue up and are
encoded in the next batch, one model call for all of them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

EncodeMany = Callable[[Sequence[str]], np.ndarray]


class BatchingEncoder:
    """`encode_query` for many threads at once, batching what arrives while an encode is running."""

    def __init__(self, encode_many: EncodeMany, max_batch: int = 32) -> None:
        self._encode_many = encode_many
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[str, Future[np.ndarray]]] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._run, name="citeline-query-encoder", daemon=True)
        self._worker.start()

    def encode_query(self, query: str) -> np.ndarray:
        """The question's vector; blocks the calling thread (never the event loop) until it is encoded."""
        future: Future[np.ndarray] = Future()
        self._queue.put((query, future))
        return future.result()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                vectors = self._encode_many([query for query, _ in batch])
            except Exception as error:  # every waiting caller gets the error, the worker lives on
                for _, future in batch:
                    future.set_exception(error)
                continue
            for (_, future), vector in zip(batch, vectors, strict=True):
                future.set_result(vector)
