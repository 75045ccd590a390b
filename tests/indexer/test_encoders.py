"""Encoder backends: ONNX (fp32, int8) against the torch reference, the export cache, the fallback, the setting."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.model.embedding import BULK_CHARACTERS, Embedder
from indexer.model.encoders import (
    DEFAULT_ENCODER,
    ENCODER_CACHE_DIR,
    index_encoder_cache,
    pool,
    token_batches,
    user_cache_dir,
    writable_cache,
)
from indexer.model.onnx_export import INT8_FILE, MODEL_FILE, SPEC_FILE, TOKENIZER_FILE
from indexer.text.chunking import ChunkerConfig, clip_title, embedding_text, passage_spans
from indexer.text.documents import Document
from service.cli import main
from service.settings import Settings
from service.startup import load_embedder

ROOT = Path(__file__).resolve().parents[2]
LONG_TEXT = " ".join(f"Sentence {i} tells of the troops, the ministers and the talks in Geneva." for i in range(40))
EDGE_TEXTS = [
    "",
    " ",
    "?",
    "Ünïcödé façade — naïve café, 北京, Привет мир, Ελληνικά, 🙂 emoji",
    LONG_TEXT,
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


@pytest.fixture(scope="module")
def torch_embedder() -> Embedder:
    return Embedder(encoder="torch")


@pytest.fixture(scope="module")
def int8_embedder(seed_index_dir: Path, embedder: Embedder) -> Embedder:
    # Same cache as the session's fp32 export: only the quantisation runs here.
    return Embedder(encoder="onnx-int8", cache_dir=index_encoder_cache(seed_index_dir))


@pytest.fixture(scope="module")
def seed_chunk_texts(seed_documents: list[Document], torch_embedder: Embedder) -> list[str]:
    """Every passage of the seeds as it is embedded (title line + passage), chunked as the index is."""
    counter = torch_embedder.token_counter
    config = ChunkerConfig(token_limit=torch_embedder.token_limit)
    return [
        embedding_text(clip_title(d.title, counter, config.token_limit), d.text[c.start : c.end])
        for d in seed_documents
        for c in passage_spans(d, counter, config)
    ]


@pytest.fixture(scope="module")
def reference_chunk_vectors(torch_embedder: Embedder, seed_chunk_texts: list[str]) -> np.ndarray:
    return torch_embedder.encode(seed_chunk_texts)


def test_default_encoder_is_onnx_and_its_export_is_cached_beside_the_index(embedder: Embedder, seed_index_dir: Path):
    assert DEFAULT_ENCODER == "auto"  # onnx, and onnx-int8 for bulk runs (test_auto_* below)
    assert embedder.encoder == "onnx"
    export = seed_index_dir / ENCODER_CACHE_DIR / embedder.info.fingerprint[:16]
    assert {p.name for p in export.iterdir()} >= {MODEL_FILE, TOKENIZER_FILE, SPEC_FILE}
    assert not list(export.glob(".tmp-*"))


def test_onnx_and_torch_describe_the_same_model(embedder: Embedder, torch_embedder: Embedder):
    # Same fingerprint, dimension and limit: an index built with one encoder serves with the other.
    assert embedder.info == torch_embedder.info
    assert embedder.token_limit == torch_embedder.token_limit == 254


def test_onnx_fp32_matches_torch_on_every_seed_chunk(
    embedder: Embedder, seed_chunk_texts: list[str], reference_chunk_vectors: np.ndarray
):
    assert len(seed_chunk_texts) > 50
    onnx, reference = embedder.encode(seed_chunk_texts), reference_chunk_vectors
    assert onnx.dtype == np.float32 and onnx.shape == reference.shape
    np.testing.assert_allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-5)
    assert cosines(onnx, reference).min() >= 0.999


def test_onnx_fp32_matches_torch_on_edge_texts(embedder: Embedder, torch_embedder: Embedder):
    assert embedder.token_counter.count([LONG_TEXT])[0] > 2 * embedder.info.max_seq_length
    onnx, reference = embedder.encode(EDGE_TEXTS), torch_embedder.encode(EDGE_TEXTS)
    assert cosines(onnx, reference).min() >= 0.999
    # Truncated at max_seq_length: what comes after the limit changes nothing, in either backend.
    longer = [LONG_TEXT + " And a last sentence about something else entirely."]
    assert cosines(embedder.encode(longer), onnx[-1:])[0] > 0.99999
    assert cosines(torch_embedder.encode(longer), reference[-1:])[0] > 0.99999


def test_onnx_query_vector_is_the_batch_vector(embedder: Embedder):
    batch = embedder.encode_queries(["short", "how many US troops were sent to Syria", "a"])
    np.testing.assert_allclose(embedder.encode_query("how many US troops were sent to Syria"), batch[1], atol=1e-5)


def test_an_int8_question_vector_does_not_depend_on_the_questions_encoded_with_it(int8_embedder: Embedder):
    question = "how many US troops were sent to Syria"
    alone = int8_embedder.encode_queries([question])[0]
    for companions in (["a"], ["a much longer text about the offensive on Raqqa and the dam at Tabqa"] * 5):
        batch = int8_embedder.encode_queries([*companions, question])
        np.testing.assert_allclose(batch[-1], alone, atol=1e-6)


def test_int8_passages_are_encoded_in_batches_close_to_alone(int8_embedder: Embedder, seed_chunk_texts: list[str]):
    texts = seed_chunk_texts[:40]
    alone = np.stack([int8_embedder.encode([text])[0] for text in texts])
    batched = int8_embedder.encode(texts)
    assert not np.allclose(batched, alone, atol=1e-6), "passages must be encoded in batches, not one by one"
    assert cosines(batched, alone).min() > 0.98  # one activation scale per batch: as close as int8 is to fp32


def test_a_text_repeated_in_one_call_is_encoded_once(int8_embedder: Embedder, seed_chunk_texts: list[str]):
    texts = [seed_chunk_texts[0], "Example:", seed_chunk_texts[1], "Example:", seed_chunk_texts[0]]
    seen: list[int] = []
    encoder = int8_embedder._encoder
    original = encoder.encode

    def counting(batch: list[str], batch_size: int, show_progress: bool) -> np.ndarray:
        seen.append(len(batch))
        return original(batch, batch_size, show_progress)

    encoder.encode = counting  # type: ignore[method-assign]
    try:
        vectors = int8_embedder.encode(texts)
    finally:
        encoder.encode = original  # type: ignore[method-assign]
    assert seen == [3] and vectors.shape == (5, int8_embedder.info.dimension)
    assert np.array_equal(vectors[1], vectors[3]) and np.array_equal(vectors[0], vectors[4])
    np.testing.assert_allclose(vectors[[0, 1, 2]], int8_embedder.encode(texts[:3]), atol=1e-6)


def test_auto_encodes_a_bulk_run_on_int8_and_anything_smaller_on_fp32(
    embedder: Embedder, int8_embedder: Embedder, seed_chunk_texts: list[str], seed_index_dir: Path
):
    assert embedder.auto and embedder.bulk_characters == BULK_CHARACTERS
    assert embedder.for_run(BULK_CHARACTERS - 1) is embedder
    bulk = embedder.for_run(BULK_CHARACTERS)
    assert bulk is embedder.bulk() and bulk.for_run(10**12) is bulk  # loaded once
    assert (bulk.encoder, bulk.query_encoder) == ("onnx-int8", embedder.query_encoder)
    assert (embedder.encoder, bulk.info) == ("onnx", embedder.info)  # one model: one index
    texts = seed_chunk_texts[:20]
    np.testing.assert_allclose(bulk.encode(texts), int8_embedder.encode(texts), atol=1e-6)
    assert not np.allclose(bulk.encode(texts), embedder.encode(texts), atol=1e-4)
    fixed = Embedder(encoder="onnx", cache_dir=index_encoder_cache(seed_index_dir))
    assert not fixed.auto and fixed.for_run(10**12) is fixed  # a named encoder is kept for every run


def test_questions_run_on_their_own_encoder_and_passages_stay_fp32(embedder: Embedder, seed_index_dir: Path):
    """The served default: int8 questions, fp32 passages, one model (so one fingerprint, one index)."""
    assert (embedder.encoder, embedder.query_encoder) == ("onnx", "onnx-int8")
    questions = ["how many US troops were sent to Syria", "when did IS take control of raqqa", "who leads the SDF"]
    fp32, int8 = embedder.encode(questions), embedder.encode_queries(questions)
    assert not np.allclose(fp32, int8, atol=1e-4), "questions must not run on the passage encoder"
    assert cosines(int8, fp32).min() > 0.98
    same = Embedder(encoder="onnx", cache_dir=index_encoder_cache(seed_index_dir))
    assert same.query_encoder == "onnx" and np.allclose(same.encode_queries(questions), fp32, atol=1e-5)


def test_onnx_int8_stays_close_to_torch(
    int8_embedder: Embedder, seed_chunk_texts: list[str], reference_chunk_vectors: np.ndarray, seed_index_dir: Path
):
    assert int8_embedder.encoder == "onnx-int8"
    assert (index_encoder_cache(seed_index_dir) / int8_embedder.info.fingerprint[:16] / INT8_FILE).is_file()
    similarity = cosines(int8_embedder.encode(seed_chunk_texts), reference_chunk_vectors)
    print(f"int8 vs torch on {len(similarity)} seed passages: mean {similarity.mean():.4f} min {similarity.min():.4f}")
    # The bar is 0.99 on average; single passages lose a little more to 8-bit weights.
    assert similarity.mean() >= 0.99
    assert similarity.min() >= 0.98


def test_token_counters_agree_so_both_encoders_chunk_alike(
    embedder: Embedder, torch_embedder: Embedder, seed_documents: list[Document]
):
    fast, reference = embedder.token_counter, torch_embedder.token_counter
    lines = [line for d in seed_documents for line in d.text.splitlines() if line.strip()] + EDGE_TEXTS
    assert fast.count(lines) == reference.count(lines)
    for text in [d.text for d in seed_documents] + EDGE_TEXTS:
        for budget in (0, 1, 7, 100, 300):
            assert fast.prefix_length(text, budget) == reference.prefix_length(text, budget)
    config = ChunkerConfig(token_limit=embedder.token_limit)
    for document in seed_documents:
        assert passage_spans(document, fast, config) == passage_spans(document, reference, config)


def test_second_load_reuses_the_cached_export(embedder: Embedder, seed_index_dir: Path, caplog):
    export = index_encoder_cache(seed_index_dir) / embedder.info.fingerprint[:16] / MODEL_FILE
    modified = export.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="indexer"):
        again = Embedder(encoder="onnx", cache_dir=index_encoder_cache(seed_index_dir))
    assert again.encoder == "onnx"
    assert export.stat().st_mtime_ns == modified
    assert not [r for r in caplog.records if "exporting" in r.getMessage()]


def test_cached_onnx_encoder_runs_without_torch(embedder: Embedder, seed_index_dir: Path):
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from indexer.model.embedding import Embedder\n"
        f"e = Embedder(encoder='onnx', cache_dir=Path({str(index_encoder_cache(seed_index_dir))!r}))\n"
        "e.encode_query('how many US troops were sent')\n"
        "print(e.encoder, 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["onnx", "False", "False"]


def test_falls_back_to_torch_when_onnxruntime_is_missing(monkeypatch, tmp_path: Path, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    with caplog.at_level(logging.WARNING, logger="indexer"):
        embedder = Embedder(encoder="onnx", cache_dir=tmp_path)
    assert embedder.encoder == "torch"
    assert any("onnxruntime" in r.getMessage() and "torch" in r.getMessage() for r in caplog.records)
    assert not list(tmp_path.iterdir())  # nothing exported
    assert embedder.encode_query("still answers").shape == (embedder.info.dimension,)


def test_falls_back_to_torch_when_the_export_fails(monkeypatch, tmp_path: Path, caplog):
    def broken_export(location: str, fingerprint: str, directory: Path) -> None:
        raise RuntimeError("simulated exporter crash")

    monkeypatch.setattr("indexer.model.onnx_export.export_model", broken_export)
    with caplog.at_level(logging.WARNING, logger="indexer"):
        embedder = Embedder(encoder="onnx-int8", cache_dir=tmp_path)
    assert embedder.encoder == "torch"
    assert any("simulated exporter crash" in r.getMessage() for r in caplog.records)


def test_unwritable_index_cache_falls_back_to_the_user_cache(tmp_path: Path, caplog):
    blocker = tmp_path / "index"
    blocker.write_text("a file where the index directory should be")
    fallback = tmp_path / "user-cache"
    with caplog.at_level(logging.WARNING, logger="indexer"):
        assert writable_cache([blocker / "encoders" / "key", fallback / "key"]) == fallback / "key"
    assert any("not writable" in r.getMessage() for r in caplog.records)


def test_an_export_in_the_user_cache_is_found_when_the_index_has_none(
    monkeypatch, tmp_path: Path, embedder: Embedder, seed_index_dir: Path
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    key = embedder.info.fingerprint[:16]
    user_cache_dir().mkdir(parents=True)
    (user_cache_dir() / key).symlink_to(index_encoder_cache(seed_index_dir) / key)
    blocker = tmp_path / "index"
    blocker.write_text("not a directory")
    found = Embedder(encoder="onnx", cache_dir=index_encoder_cache(blocker))
    assert found.encoder == "onnx"


def test_a_shared_encoder_cache_serves_every_index_without_a_new_export(
    monkeypatch, tmp_path: Path, embedder: Embedder, seed_index_dir: Path
):
    # The Docker image's case: its export sits in CITELINE_ENCODER_CACHE, the served index is a new one.
    def no_export(location: str, fingerprint: str, directory: Path) -> None:
        raise AssertionError(f"exported again into {directory}")

    monkeypatch.setattr("indexer.model.onnx_export.export_model", no_export)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    settings = Settings.from_env(
        {"CITELINE_ENCODER_CACHE": str(index_encoder_cache(seed_index_dir))},
        index=tmp_path / "new-index",
        encoder="onnx",
        query_encoder="onnx",
    )
    shared = load_embedder(settings)
    assert (shared.encoder, shared.query_encoder) == ("onnx", "onnx")
    assert not (tmp_path / "new-index").exists()  # nothing copied beside the new index


def test_a_new_export_goes_to_the_shared_cache_before_the_index(monkeypatch, tmp_path: Path):
    tried: list[Path] = []

    def record(location: str, fingerprint: str, directory: Path) -> None:
        tried.append(directory)
        raise RuntimeError("stop after choosing the directory")

    monkeypatch.setattr("indexer.model.onnx_export.export_model", record)
    embedder = Embedder(encoder="onnx", cache_dir=tmp_path / "index" / "encoders", shared_cache=tmp_path / "shared")
    assert embedder.encoder == "torch"  # the simulated failure falls back, as any failed export does
    assert [d.parent for d in tried] == [tmp_path / "shared"]


def test_pooling_ignores_padding():
    tokens = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    np.testing.assert_allclose(pool(tokens, mask, "mean"), [[2.0, 3.0]])
    np.testing.assert_allclose(pool(tokens, mask, "cls"), [[1.0, 2.0]])
    np.testing.assert_allclose(pool(tokens, mask, "max"), [[3.0, 4.0]])
    np.testing.assert_allclose(pool(tokens, mask, "mean_sqrt_len_tokens"), [[4.0, 6.0]] / np.sqrt(2))
    with pytest.raises(ValueError, match="weightedmean"):
        pool(tokens, mask, "weightedmean")


def test_bad_encoder_setting_names_the_variable_and_the_choices(capsys):
    with pytest.raises(ValueError, match=r"CITELINE_ENCODER='tensorrt' is not one of auto, onnx, onnx-int8, torch"):
        Settings.from_env({"CITELINE_ENCODER": "tensorrt"})
    with pytest.raises(ValueError, match="CITELINE_THREADS='many' is not a valid int"):
        Settings.from_env({"CITELINE_THREADS": "many"})
    assert Settings.from_env({"CITELINE_ENCODER": "torch", "CITELINE_THREADS": "2"}).encoder == "torch"
    with pytest.raises(ValueError, match="unknown encoder 'fast'"):
        Embedder(encoder="fast")
    with pytest.raises(ValueError, match="unknown encoder 'auto': choose one of onnx, onnx-int8, torch"):
        Embedder(query_encoder="auto")  # auto is for passages: a question is never a bulk run
    with pytest.raises(SystemExit):
        main(["search", "q", "--encoder", "fast"])
    assert "invalid choice: 'fast'" in capsys.readouterr().err


def test_bad_encoder_variable_is_a_clear_cli_error(monkeypatch, capsys, tmp_path: Path):
    monkeypatch.setenv("CITELINE_ENCODER", "gpu")
    assert main(["search", "q", "--index", str(tmp_path)]) == 2
    assert "CITELINE_ENCODER='gpu' is not one of auto, onnx, onnx-int8, torch" in capsys.readouterr().err


def test_encoder_and_threads_flags_override_the_environment(monkeypatch):
    from service.cli import _settings, build_parser

    monkeypatch.setenv("CITELINE_ENCODER", "torch")
    monkeypatch.setenv("CITELINE_THREADS", "4")
    for command in (["search", "q"], ["index", "seeds"], ["serve"], ["eval", "questions.jsonl"]):
        settings = _settings(build_parser().parse_args([*command, "--encoder", "onnx-int8", "--threads", "1"]))
        assert (settings.encoder, settings.threads) == ("onnx-int8", 1)
    assert _settings(build_parser().parse_args(["serve"])).encoder == "torch"


@given(
    st.lists(st.integers(1, 300), max_size=200).map(lambda xs: sorted(xs, reverse=True)),
    st.integers(1, 64),
    st.integers(1, 2048),
)
def test_token_batches_cover_every_text_within_both_limits(lengths: list[int], max_rows: int, max_tokens: int):
    batches = token_batches(lengths, max_rows, max_tokens)
    assert [i for start, end in batches for i in range(start, end)] == list(range(len(lengths)))
    for start, end in batches:
        assert 1 <= end - start <= max_rows
        assert end - start == 1 or (end - start) * lengths[start] <= max_tokens  # padded to its longest
