"""Opportunistic micro-batching of query encoding: questions that arrive together are encoded together.

No worker thread and no waiting window. A question that finds the encoder idle is encoded at once, on
the caller's own thread, alone: a lone client pays nothing, not even a thread switch. Questions that
arrive while an encode runs queue up; when it ends, the first of them takes the encoder over and encodes
the whole queue in one model call, its own question included.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

EncodeMany = Callable[[Sequence[str]], np.ndarray]


class _Request:
    """One question waiting for its vector, or for its turn to encode the queue (`lead`)."""

    __slots__ = ("done", "error", "lead", "query", "vector")

    def __init__(self, query: str) -> None:
        self.query = query
        self.done = threading.Event()
        self.vector: np.ndarray | None = None
        self.error: BaseException | None = None
        self.lead = False


class BatchingEncoder:
    """`encode_query` for many threads at once, batching what arrives while an encode is running."""

    def __init__(self, encode_many: EncodeMany, max_batch: int = 32) -> None:
        self._encode_many = encode_many
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._pending: deque[_Request] = deque()
        self._busy = False  # a thread is encoding; only it (or the successor it names) takes from the queue

    def encode_query(self, query: str) -> np.ndarray:
        """The question's vector; blocks the calling thread (never the event loop) until it is encoded."""
        request = _Request(query)
        with self._lock:
            self._pending.append(request)
            leading = not self._busy
            self._busy = True
        if not leading:
            request.done.wait()
            leading = request.lead  # woken to encode the queue, not with a result
        if leading:
            self._encode_queue()
        if request.error is not None:
            raise request.error
        assert request.vector is not None
        return request.vector

    def _encode_queue(self) -> None:
        """Encode up to `max_batch` queued questions (the caller's first), then hand the encoder on."""
        with self._lock:
            batch = [self._pending.popleft() for _ in range(min(self._max_batch, len(self._pending)))]
        try:
            vectors = self._encode_many([request.query for request in batch])
            for request, vector in zip(batch, vectors, strict=True):
                request.vector = vector
        except BaseException as error:  # every caller of the batch gets the error; the encoder stays usable
            for request in batch:
                request.error = error
        finally:
            with self._lock:
                if self._pending:
                    successor = self._pending[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._busy = False
            for request in batch:
                request.done.set()
