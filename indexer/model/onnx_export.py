"""The one-time ONNX export of a sentence-transformers model (needs torch and onnx), and its int8 quantisation.

An export directory holds everything the ONNX encoder needs at query time, so that it never loads torch:

    model.onnx        the transformer: (input_ids, attention_mask[, token_type_ids]) -> token embeddings;
                      for BERT models, with onnxruntime's fused attention, GELU and layer-norm kernels
    model-int8.onnx   the same, dynamically quantised (MatMul and attention weights, int8 per channel), on demand
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

from indexer.errors import CitelineError

logger = logging.getLogger(__name__)

# Bumped whenever the export changes what it writes: older exports are then made again.
# 2: eager attention, fused by onnxruntime's transformer optimizer (BERT models).
EXPORT_FORMAT = 2
# onnxruntime 1.2x runs opset 17 everywhere; it is also the newest the TorchScript exporter knows well.
OPSET = 17
MODEL_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
SPEC_FILE = "encoder.json"
OUTPUT_NAME = "token_embeddings"
POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len_tokens")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Model types onnxruntime's transformer optimizer fuses (its `bert` pass); others keep the plain export.
_FUSABLE = frozenset({"bert"})
# The fused graph must give the plain graph's token embeddings, up to float rounding.
_FUSED_TOLERANCE = 1e-4


class UnsupportedModelError(CitelineError, ValueError):
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
    if hasattr(transformer, "set_attn_implementation"):
        # The eager attention exports as the MatMul/Softmax pattern that onnxruntime fuses; SDPA's does not.
        transformer.set_attn_implementation("eager")

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
        write_plain(path)
        _fuse(path, transformer.config, {n: t.numpy() for n, t in zip(spec.input_names, inputs, strict=True)})

    def write_plain(path: Path) -> None:
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
    (directory / INT8_FILE).unlink(missing_ok=True)  # quantised from an older export: made again on demand
    backend = model.tokenizer.backend_tokenizer
    _replace_atomically(directory, TOKENIZER_FILE, lambda path: path.write_text(backend.to_str(), encoding="utf-8"))
    _replace_atomically(directory, MODEL_FILE, write_onnx)
    _replace_atomically(directory, SPEC_FILE, lambda path: path.write_text(spec.to_json(), encoding="utf-8"))
    logger.info("exported the model to ONNX in %s (%.1fs)", directory, time.perf_counter() - started)
    return spec


def _fuse(path: Path, config: Any, sample: dict[str, Any]) -> None:
    """Rewrite the exported graph at `path` with onnxruntime's fused transformer kernels, where it can.

    Fused attention, GELU and layer norms cut the number of kernel launches, which is most of the cost of
    encoding one short question (fp32: about 2.2 -> 2.0 ms on 2 cores). The fused graph is kept
    only if it gives the plain graph's output on `sample`; otherwise, or for another model type, the
    plain export stays.
    """
    model_type = getattr(config, "model_type", "")
    if model_type not in _FUSABLE:
        return
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.transformers import optimizer

    fused_path = path.with_name(path.name + ".fused")
    try:
        fused = optimizer.optimize_model(
            str(path),
            model_type=model_type,
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            opt_level=1,
        )
        fused.save_model_to_file(str(fused_path))

        def run(model_path: Path) -> Any:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
            return session.run([OUTPUT_NAME], sample)[0]

        mask = sample["attention_mask"][..., None].astype(bool)
        difference = float(np.abs(np.where(mask, run(fused_path) - run(path), 0)).max())
        if difference > _FUSED_TOLERANCE:
            logger.warning("fused ONNX graph differs from the plain one by %.2g: keeping the plain one", difference)
            return
        os.replace(fused_path, path)
    except Exception as error:  # an optimiser that cannot handle this graph leaves the plain export
        logger.warning("could not fuse the ONNX graph (%s): keeping the plain one", error)
    finally:
        fused_path.unlink(missing_ok=True)


def quantize_model(directory: Path) -> None:
    """Write `model-int8.onnx` beside `model.onnx`: dynamic int8, per-channel weights of MatMul and Attention."""
    import onnx
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
                # Attention: the fused kernel's Q/K/V projection (QAttention), measured faster per question.
                op_types_to_quantize=["MatMul", "Attention"],
                weight_type=QuantType.QInt8,
                # Shape inference cannot type the outputs of fused (com.microsoft) kernels: they are float.
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        finally:
            logging.disable(logging.NOTSET)

    _replace_atomically(directory, INT8_FILE, write_int8)
    logger.info("quantised the ONNX model to int8 in %s (%.1fs)", directory, time.perf_counter() - started)
