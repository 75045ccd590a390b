"""The one-time ONNX export of a sentence-transformers model (needs torch and onnx), and its int8 quantisation.

An export directory holds everything the ONNX encoder needs at query time, so that it never loads torch:

    model.onnx        the transformer: (input_ids, attention_mask[, token_type_ids]) -> token embeddings
    model-int8.onnx   the same, dynamically quantised (MatMul weights, int8 per channel), made on demand
    tokenizer.json    the model's own fast tokenizer, as sentence-transformers configured it
    encoder.json      `ExportSpec`: pooling, dimension, sequence limit, padding id, the model fingerprint

Every file is written to a temporary name and renamed into place, `encoder.json` last: two processes
exporting at once both produce complete, identical files, and a reader never sees half of one.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Bumped whenever the export changes what it writes: older exports are then made again.
EXPORT_FORMAT = 1
# onnxruntime 1.2x runs opset 17 everywhere; it is also the newest the TorchScript exporter knows well.
OPSET = 17
MODEL_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
SPEC_FILE = "encoder.json"
OUTPUT_NAME = "token_embeddings"
POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len_tokens")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class UnsupportedModelError(ValueError):
    """The model's pipeline has a step the ONNX encoder does not reproduce (it stays on torch)."""


@dataclass(frozen=True)
class ExportSpec:
    """What the ONNX encoder needs besides the graph, read from the loaded torch model at export time."""

    fingerprint: str
    dimension: int
    max_seq_length: int
    pooling: str
    pad_id: int
    input_names: tuple[str, ...]
    export_format: int = EXPORT_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ExportSpec:
        raw: dict[str, Any] = json.loads(text)
        raw["input_names"] = tuple(raw["input_names"])
        return cls(**raw)


def read_spec(directory: Path) -> ExportSpec | None:
    """The spec of a finished export in `directory`, or None if there is none (or it is unreadable)."""
    try:
        return ExportSpec.from_json((directory / SPEC_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _replace_atomically(directory: Path, name: str, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` on a fresh temporary path in `directory`, then rename it to `name`."""
    tmp = directory / f".tmp-{uuid.uuid4().hex}-{name}"
    try:
        write(tmp)
        os.replace(tmp, directory / name)
    finally:
        tmp.unlink(missing_ok=True)


def _spec_of(model: Any, fingerprint: str) -> ExportSpec:
    """Check that `model` is Transformer → Pooling (→ Normalize) and read what the ONNX path must reproduce."""
    from sentence_transformers.base.modules.normalize import Normalize
    from sentence_transformers.base.modules.transformer import Transformer
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling

    modules = list(model)
    kinds = [type(m).__name__ for m in modules]
    if (
        len(modules) not in (2, 3)
        or not isinstance(modules[0], Transformer)
        or not isinstance(modules[1], Pooling)
        or (len(modules) == 3 and not isinstance(modules[2], Normalize))
    ):
        raise UnsupportedModelError(f"pipeline {' → '.join(kinds)} is not Transformer → Pooling (→ Normalize)")
    pooling = modules[1].pooling_mode
    if pooling not in POOLING_MODES:
        raise UnsupportedModelError(f"pooling {pooling!r} is not one of {', '.join(POOLING_MODES)}")
    tokenizer = model.tokenizer
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise UnsupportedModelError("the model's tokenizer has no fast (tokenizers) backend")
    return ExportSpec(
        fingerprint=fingerprint,
        dimension=int(model.get_embedding_dimension()),
        max_seq_length=int(model.max_seq_length),
        pooling=str(pooling),
        pad_id=int(tokenizer.pad_token_id or 0),
        input_names=tuple(n for n in _INPUTS if n in tokenizer.model_input_names),
    )


def export_model(location: str, fingerprint: str, directory: Path) -> ExportSpec:
    """Export the sentence-transformers model at `location` into `directory` (see the module docstring)."""
    import torch
    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    model = SentenceTransformer(location, device="cpu")
    spec = _spec_of(model, fingerprint)
    transformer: Any = model[0].auto_model
    transformer.eval()

    class TokenEmbeddings(torch.nn.Module):
        """The HF model called by keyword: transformers 5 changed BertModel's positional arguments."""

        def __init__(self) -> None:
            super().__init__()
            self.model = transformer

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(spec.input_names, inputs, strict=True))).last_hidden_state

    # Two texts of different lengths, so that neither axis is traced as a constant.
    sample = model.tokenizer(["a sample", "a longer sample sentence to export"], padding=True, return_tensors="pt")
    inputs = tuple(sample[name] for name in spec.input_names)
    axes = {name: {0: "batch", 1: "sequence"} for name in spec.input_names}
    axes[OUTPUT_NAME] = {0: "batch", 1: "sequence"}

    def write_onnx(path: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter (dynamo=False) needs only `onnx`; the dynamo one would also need onnxscript.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                TokenEmbeddings().eval(),
                inputs,
                str(path),
                input_names=list(spec.input_names),
                output_names=[OUTPUT_NAME],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )

    directory.mkdir(parents=True, exist_ok=True)
    backend = model.tokenizer.backend_tokenizer
    _replace_atomically(directory, TOKENIZER_FILE, lambda path: path.write_text(backend.to_str(), encoding="utf-8"))
    _replace_atomically(directory, MODEL_FILE, write_onnx)
    _replace_atomically(directory, SPEC_FILE, lambda path: path.write_text(spec.to_json(), encoding="utf-8"))
    logger.info("exported the model to ONNX in %s (%.1fs)", directory, time.perf_counter() - started)
    return spec


def quantize_model(directory: Path) -> None:
    """Write `model-int8.onnx` beside `model.onnx`: dynamic int8, per-channel weights, MatMul only."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    started = time.perf_counter()

    def write_int8(path: Path) -> None:
        # The quantiser logs a line per tensor, and advice, on the root logger: hide it for these seconds.
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(
                directory / MODEL_FILE,
                path,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
                weight_type=QuantType.QInt8,
            )
        finally:
            logging.disable(logging.NOTSET)

    _replace_atomically(directory, INT8_FILE, write_int8)
    logger.info("quantised the ONNX model to int8 in %s (%.1fs)", directory, time.perf_counter() - started)
