"""Encoder backends (torch, ONNX Runtime fp32 and int8) and `create_encoder`, the one place that picks one.

torch (sentence-transformers) is the reference and the fallback. The ONNX backends run an export of the
same model (indexer/model/onnx_export.py), cached per model fingerprint, with onnxruntime and the model's own
fast tokenizer, then apply the model's pooling and L2 normalisation: same vectors (cosine ≥ 0.999 for
fp32), a fraction of the time per query, and no torch in the process once the export is cached.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from indexer.errors import CitelineError
from indexer.text.chunking import TokenCounter

logger = logging.getLogger(__name__)

ENCODERS = ("onnx", "onnx-int8", "torch")
# `auto` (passages only): fp32 for writes and small runs, int8 for a bulk run (see Embedder.for_run).
AUTO = "auto"
PASSAGE_ENCODERS = (AUTO, *ENCODERS)
# Passages are embedded in fp32 where it costs little (writes, small collections): an index is written once
# and read for its whole life; a large bulk run takes int8, about twice as fast and within 0.005 nDCG@10 on
# the development sets. Questions are encoded with int8 weights: faster, with no change in retrieval beyond
# noise (bench/REPORT.md, ablations).
DEFAULT_ENCODER = AUTO
DEFAULT_QUERY_ENCODER = "onnx-int8"
ENCODER_CACHE_DIR = "encoders"  # inside an index directory
# Padded tokens per onnxruntime call: a batch of 64 passages outgrows the CPU's caches and runs slower
# per text than a few at a time (bench/REPORT.md, indexing); short texts still go many to a call.
BATCH_TOKENS = 1024


class EncoderUnavailableError(CitelineError, RuntimeError):
    """An ONNX encoder cannot run here (missing package, failed export, unsupported model)."""


class Encoder(Protocol):
    """What `Embedder` needs from a backend."""

    kind: str
    dimension: int
    max_seq_length: int
    token_counter: TokenCounter

    def encode(self, texts: list[str], batch_size: int, show_progress: bool) -> np.ndarray:
        """L2-normalised float32 vectors of `texts`, shape (len(texts), dimension)."""
        ...


class HFTokenCounter:
    """`TokenCounter` over a Hugging Face tokenizer (the torch model's own)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        # Counting a sentence longer than the model's limit is the point here, not an error.
        logging.getLogger("transformers.tokenization_utils_base").setLevel(logging.ERROR)

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encoded = self._tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def prefix_length(self, text: str, max_tokens: int) -> int:
        encoded = self._tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        if len(offsets) <= max_tokens:
            return len(text)
        return int(offsets[max_tokens][0]) if max_tokens > 0 else 0


class FastTokenCounter:
    """`TokenCounter` over a `tokenizers.Tokenizer` (the ONNX path's, same vocabulary and rules as torch's)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer  # without truncation or padding

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(e.ids) for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def prefix_length(self, text: str, max_tokens: int) -> int:
        offsets = self._tokenizer.encode(text, add_special_tokens=False).offsets
        if len(offsets) <= max_tokens:
            return len(text)
        return int(offsets[max_tokens][0]) if max_tokens > 0 else 0


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (an all-zero row stays zero), float32."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def pool(token_embeddings: np.ndarray, attention_mask: np.ndarray, mode: str) -> np.ndarray:
    """Sentence vectors from token vectors (batch, sequence, dim) as sentence-transformers' `Pooling` does."""
    mask = attention_mask[..., None].astype(token_embeddings.dtype)
    if mode == "cls":
        first = attention_mask.argmax(axis=1)  # first real token, whatever the padding side
        return token_embeddings[np.arange(len(first)), first]
    if mode == "max":
        return np.where(mask > 0, token_embeddings, -np.inf).max(axis=1)
    if mode in ("mean", "mean_sqrt_len_tokens"):
        counts = np.maximum(mask.sum(axis=1), 1e-9)
        summed = (token_embeddings * mask).sum(axis=1)
        return summed / (counts if mode == "mean" else np.sqrt(counts))
    raise ValueError(f"unknown pooling mode {mode!r}")


class TorchEncoder:
    """The reference: the sentence-transformers model on torch."""

    kind = "torch"

    def __init__(self, location: str, threads: int = 0) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if threads > 0:
            torch.set_num_threads(threads)
        self._model = SentenceTransformer(location, device="cpu")
        self.token_counter: TokenCounter = HFTokenCounter(self._model.tokenizer)
        self.dimension = int(self._model.get_embedding_dimension() or 0)
        self.max_seq_length = int(self._model.max_seq_length or 512)

    def encode(self, texts: list[str], batch_size: int, show_progress: bool) -> np.ndarray:
        vectors = self._model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class OnnxEncoder:
    """An exported model on onnxruntime (CPU), tokenised with `tokenizers`; imports neither torch nor transformers."""

    def __init__(self, directory: Path, kind: str = "onnx", threads: int = 0, spin: bool = True) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from indexer.model.onnx_export import INT8_FILE, MODEL_FILE, OUTPUT_NAME, TOKENIZER_FILE, read_spec

        spec = read_spec(directory)
        if spec is None:
            raise EncoderUnavailableError(f"no ONNX export in {directory}")
        self.kind = kind
        self.dimension = spec.dimension
        self.max_seq_length = spec.max_seq_length
        self._spec = spec
        self._output = OUTPUT_NAME
        counting = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        counting.no_truncation()
        counting.no_padding()
        self.token_counter: TokenCounter = FastTokenCounter(counting)
        # Encoding truncates like sentence-transformers (max_seq_length, special tokens included) and
        # pads per batch below, to the longest text in it.
        self._tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=spec.max_seq_length)

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(threads, 0)  # 0: onnxruntime's default, one per physical core
        options.inter_op_num_threads = 1  # the graph is a chain: no parallel branches to run
        # Spinning threads wait for work by busy-looping: some 10% more passages/s in bulk indexing, but in a
        # server they hold the cores at normal priority, and a job at nice 19 that encodes through the same
        # threads waits for its own share behind them (it barely moves while questions arrive).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        model = directory / (INT8_FILE if kind == "onnx-int8" else MODEL_FILE)
        self._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.path = model

    def _embed_batch(self, encodings: list[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        arrays = {name: np.zeros((len(encodings), width), dtype=np.int64) for name in self._spec.input_names}
        ids, mask = arrays["input_ids"], arrays["attention_mask"]
        ids.fill(self._spec.pad_id)
        types = arrays.get("token_type_ids")
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n] = encoding.ids
            mask[row, :n] = encoding.attention_mask
            if types is not None:
                types[row, :n] = encoding.type_ids
        (hidden,) = self._session.run([self._output], arrays)
        return pool(hidden, mask, self._spec.pooling)

    def encode(self, texts: list[str], batch_size: int, show_progress: bool) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        # Longest first, as sentence-transformers does: batches of similar lengths carry little padding.
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        batches = token_batches([len(encodings[r].ids) for r in order], max(batch_size, 1), BATCH_TOKENS)
        # A disabled tqdm still costs ~40 us to build: a tenth of a question's whole encoding overhead.
        for start, end in tqdm(batches, desc="Batches") if show_progress else batches:
            rows = order[start:end]
            vectors[rows] = self._embed_batch([encodings[r] for r in rows])
        return normalize_rows(vectors)


def token_batches(lengths: Sequence[int], max_rows: int, max_tokens: int) -> list[tuple[int, int]]:
    """`[start, end)` ranges of texts sorted longest first, each at most `max_rows` texts and, padded to its
    first (longest) text, at most `max_tokens` tokens (a text longer than that alone is a batch of one)."""
    batches = []
    start = 0
    while start < len(lengths):
        rows = max(1, min(max_rows, max_tokens // max(lengths[start], 1)))
        batches.append((start, min(start + rows, len(lengths))))
        start += rows
    return batches


def user_cache_dir() -> Path:
    """Where exports go when the index directory cannot hold them: $XDG_CACHE_HOME/citeline or ~/.cache/citeline."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "citeline" / ENCODER_CACHE_DIR


def index_encoder_cache(index_dir: Path) -> Path:
    """The export cache of an index: `<index>/encoders/`."""
    return index_dir / ENCODER_CACHE_DIR


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
            return True
    except OSError:
        return False


def writable_cache(candidates: Sequence[Path]) -> Path:
    """The first of `candidates` this process can write to; logs when it is not the first."""
    for number, directory in enumerate(candidates):
        if _writable(directory):
            if number > 0:
                logger.warning("encoder cache %s is not writable; using %s", candidates[0], directory)
            return directory
    raise EncoderUnavailableError(f"no writable place for the ONNX export: tried {', '.join(map(str, candidates))}")


def onnx_export_dir(
    location: str, fingerprint: str, cache_dir: Path | None, quantized: bool, shared_cache: Path | None = None
) -> Path:
    """A directory holding a finished export of this model (and its int8 version if `quantized`), made if needed.

    Looked for in `shared_cache` (one for every index, e.g. the one a container image carries), then
    `cache_dir` (the index's own), then the user cache; a new export goes to the first writable of them.
    """
    from indexer.model.onnx_export import EXPORT_FORMAT, INT8_FILE, MODEL_FILE, read_spec

    key = fingerprint[:16]
    candidates = [d / key for d in (shared_cache, cache_dir, user_cache_dir()) if d is not None]

    def finished(directory: Path) -> bool:
        spec = read_spec(directory)
        return (
            spec is not None
            and spec.fingerprint == fingerprint
            and spec.export_format == EXPORT_FORMAT
            and (directory / MODEL_FILE).is_file()
        )

    directory = next((d for d in candidates if finished(d)), None)
    if directory is None:
        directory = writable_cache(candidates)
        try:
            from indexer.model.onnx_export import export_model

            logger.info("exporting the model to ONNX once, into %s", directory)
            export_model(location, fingerprint, directory)
        except ImportError as error:
            raise EncoderUnavailableError(f"the export needs torch and onnx: {error}") from error
        except Exception as error:
            raise EncoderUnavailableError(f"the ONNX export failed: {error}") from error
    else:
        logger.debug("reusing the ONNX export in %s", directory)
    if quantized and not (directory / INT8_FILE).is_file():
        if not _writable(directory):
            raise EncoderUnavailableError(f"{directory} holds no int8 model and is not writable")
        try:
            from indexer.model.onnx_export import quantize_model

            quantize_model(directory)
        except ImportError as error:
            raise EncoderUnavailableError(f"int8 quantisation needs onnx: {error}") from error
        except Exception as error:
            raise EncoderUnavailableError(f"int8 quantisation failed: {error}") from error
    return directory


def check_encoder_kind(kind: str, choices: Sequence[str] = ENCODERS) -> str:
    """`kind` if it names one of `choices`, else a ValueError listing them."""
    if kind not in choices:
        raise ValueError(f"unknown encoder {kind!r}: choose one of {', '.join(choices)}")
    return kind


def create_encoder(
    kind: str,
    location: str,
    fingerprint: str,
    cache_dir: Path | None = None,
    threads: int = 0,
    shared_cache: Path | None = None,
    spin: bool = True,
) -> Encoder:
    """The backend `kind` for the model at `location`; torch, with a warning, when an ONNX one cannot run.

    ONNX exports are cached in `<cache>/<fingerprint[:16]>/`, the cache being `shared_cache`, `cache_dir`
    or the user cache directory (see `onnx_export_dir`).
    `threads` sets onnxruntime's intra-op threads or torch's thread count; 0 keeps the library's default.
    `spin`: onnxruntime's threads busy-wait for work (faster bulk encoding; off where other work must run).
    """
    check_encoder_kind(kind)
    if kind != "torch":
        try:
            import onnxruntime  # noqa: F401  (fail here, before any export work)
        except ImportError:
            logger.warning("encoder %r needs onnxruntime, which is not installed: using torch", kind)
        else:
            try:
                directory = onnx_export_dir(
                    location, fingerprint, cache_dir, quantized=kind == "onnx-int8", shared_cache=shared_cache
                )
                return OnnxEncoder(directory, kind, threads, spin)
            except Exception as error:
                logger.warning("encoder %r is not available (%s): using torch", kind, error)
    return TorchEncoder(location, threads)
