"""How a sealed segment's vectors are searched: exactly (`flat`), or through an HNSW graph (`hnsw`).

`flat` scans every row (a matrix product over the memory-mapped float32 rows): exact, and fast enough
up to some tens of thousands of rows. `hnsw` keeps a FAISS HNSW graph over 8-bit quantized copies of
the passage vectors in a file of the segment; a search walks the graph for candidates, then scores them
from the segment's rows: the candidate set is approximate, the scores nearly exact (float16, below).
HNSW cannot remove a vector (faiss#3339): rows of deleted documents are skipped at search time by a
selector (the tombstones of the view) and dropped when a merge rewrites the segment.

A graph segment keeps its passage and sentence rows as float16: a search reads the rows of its candidates
a page at a time, and over many searches those pages add up in the process's memory, half as fast at half
the size. Scores from float16 rows differ from float32 ones by about 1e-4 (`make bench-quality` compares
graph segments with exact search on every development set); a `flat` segment stays float32 and exact.

`auto`, the default, gives a segment an HNSW graph once it holds `ANN_MIN_PASSAGES` passages
(bench/SCALE.md measures where the graph starts to win): small collections stay exact, and every
evaluation figure on them equals exact search.
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

FLAT, HNSW, AUTO = "flat", "hnsw", "auto"
INDEX_TYPES = (FLAT, HNSW)  # what a segment's manifest entry may name
SETTINGS = (AUTO, *INDEX_TYPES)  # what a user may ask for
ANN_MIN_PASSAGES = 50_000  # `auto`: segments at least this large get a graph
GRAPH_FILE = "passages.hnsw"
NEIGHBOURS = 32  # HNSW's M: links per vector
BUILD_DEPTH = 200  # efConstruction: at 80 a graph of a million clustered vectors found 71% of a top 10
# efSearch at the least: questions lie apart from passages, and a shallow walk misses (bench/SCALE.md).
SEARCH_DEPTH = 512
TRAIN_ROWS = 65_536  # the quantizer learns each dimension's range from this many rows
ADD_BATCH = 32_768  # rows added to the graph at a time (bounds the copy taken from the mapped file)
EXACT_ROWS = 8_192  # a filter leaving this few rows of a segment scores them all instead of walking the graph


def row_dtype(index: str) -> np.dtype:
    """The type of a segment's vector rows: float16 with a graph, float32 (exact) without."""
    return np.dtype(np.float16 if index == HNSW else np.float32)


def resolve(setting: str, passages: int) -> str:
    """The index type a segment of `passages` passages gets under the setting `setting`."""
    if setting == AUTO:
        return HNSW if passages >= ANN_MIN_PASSAGES else FLAT
    if setting not in INDEX_TYPES:
        raise ValueError(f"vector index {setting!r} is not one of {', '.join(SETTINGS)}")
    return setting


def build_graph(vectors: np.ndarray, path: Path) -> None:
    """Write an HNSW graph over `vectors` (unit rows, searched by inner product) to `path`, fsynced."""
    dimension = vectors.shape[1]
    quantizer = faiss.ScalarQuantizer.QT_8bit
    index = faiss.IndexHNSWSQ(dimension, quantizer, NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)  # type: ignore[arg-type]
    index.hnsw.efConstruction = BUILD_DEPTH
    if len(vectors):
        step = max(1, len(vectors) // TRAIN_ROWS)
        index.train(np.ascontiguousarray(vectors[::step][:TRAIN_ROWS], dtype=np.float32))
        for at in range(0, len(vectors), ADD_BATCH):
            index.add(np.ascontiguousarray(vectors[at : at + ADD_BATCH], dtype=np.float32))
    faiss.write_index(index, str(path))
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())


def open_graph(path: Path) -> faiss.Index:
    """An HNSW graph written by `build_graph`; its quantized codes stay memory-mapped."""
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)


def graph_candidates(graph: faiss.Index, query: np.ndarray, depth: int, allowed: np.ndarray | None) -> np.ndarray:
    """Rows of the segment near `query` by the graph (at most `depth`, among those `allowed` allows)."""
    params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from faiss's stubs
    params.efSearch = max(SEARCH_DEPTH, depth)
    bits = None
    if allowed is not None:
        bits = np.packbits(allowed, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
        params.sel = selector
    _, labels = graph.search(query.reshape(1, -1).astype(np.float32, copy=False), depth, params=params)
    del bits  # the selector reads the bitmap during the search only
    rows = labels[0]
    return rows[rows >= 0].astype(np.int64)
