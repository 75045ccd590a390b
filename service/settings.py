"""All settings in one place: `CITELINE_*` environment variables, overridden by CLI flags."""

from __future__ import annotations

import argparse
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from indexer.formats.extracted import Limits
from indexer.model.encoders import DEFAULT_ENCODER, DEFAULT_QUERY_ENCODER, ENCODERS, PASSAGE_ENCODERS
from indexer.store import vector_index

ENV_PREFIX = "CITELINE_"
# Old names still read, with a warning: old name -> setting.
DEPRECATED = {"chunk_tokens": "passage_tokens", "segment_index": "vector_index"}


def _setting(default: Any, help: str, choices: tuple[str, ...] = ()) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class Settings:
    """Citeline's configuration. Each field `x` is read from `CITELINE_X`; CLI flags override it."""

    index: Path = _setting(Path("index"), "Index directory (holds records.sqlite and bm25/).")  # noqa: RUF009
    sources: str = _setting("", "Comma-separated folders/JSONL files that `serve` indexes (incrementally) first.")
    watch: str = _setting(
        "", "Comma-separated folders `serve` keeps in sync while serving: new, changed and deleted files, no restart."
    )
    model: str = _setting("all-MiniLM-L6-v2", "Embedding model: the bundled default, a local folder or a cached name.")
    host: str = _setting("127.0.0.1", "Address `serve` listens on.")
    port: int = _setting(8000, "Port `serve` listens on.")
    passage_tokens: int = _setting(96, "Target passage size in tokens, title included; capped by the model limit.")
    overlap_sentences: int = _setting(1, "Sentences repeated between consecutive passages of a document.")
    embed_title: bool = _setting(True, "Embed each passage with its document's title line (never part of a citation).")
    batch_size: int = _setting(64, "Encoding batch size when indexing.")
    log_level: str = _setting("INFO", "Logging level (DEBUG, INFO, WARNING, ERROR).")
    encoder: str = _setting(
        DEFAULT_ENCODER,
        "Encoder of passages (indexing, writes): auto, onnx (fp32), onnx-int8 or torch; torch is the fallback "
        "when onnx cannot run. onnx-int8 indexes about twice as fast, within 0.005 nDCG@10 on the larger "
        "development sets; auto takes it for runs of a million characters or more, onnx otherwise (README, "
        "Encoders).",
        choices=PASSAGE_ENCODERS,
    )
    query_encoder: str = _setting(
        DEFAULT_QUERY_ENCODER,
        "Encoder of questions at search time: onnx, onnx-int8 or torch; int8 answers sooner with the same "
        "retrieval quality.",
        choices=ENCODERS,
    )
    batch_queries: bool = _setting(
        True, "Encode questions that arrive together in one batch (no waiting window); false: one by one."
    )
    encoder_cache: str = _setting(
        "", "Folder of ONNX exports shared by every index, tried before the index's own encoders/."
    )
    threads: int = _setting(0, "Encoder threads (onnxruntime intra-op, torch); 0 = the library's default.")
    ray: str = _setting(
        "",
        "Ray cluster to run on (the extra citeline[ray]): `index` embeds there, `serve --shards N` serves there. "
        "`local` starts one on this machine, an address (host:6379, ray://host:10001, auto) joins one; empty: no Ray.",
    )
    ray_actors: int = _setting(0, "Encoder actors on the Ray cluster; 0 = the cluster's CPUs / `threads` (1 if 0).")
    ray_object_store_mb: int = _setting(1024, "Object store of a Ray that `--ray local` starts, in MiB.")
    shards: int = _setting(
        0, "Shards `serve --ray` splits the collection into, each a store served by a Ray Serve deployment; 0: no Ray."
    )
    reload_seconds: float = _setting(
        2.0, "How often `serve` takes in writes made by another process, e.g. `citeline index` (0: never)."
    )
    seal_passages: int = _setting(
        20_000,
        "Passages written since the last seal (their vectors in memory) at which they are sealed into a "
        "memory-mapped segment.",
    )
    max_segments: int = _setting(8, "Sealed segments an index keeps before the two smallest neighbours merge.")
    vector_index: str = _setting(
        vector_index.AUTO,
        "How a sealed segment's passage vectors are searched: flat (exact), hnsw (a graph, for large "
        f"collections), or auto (hnsw for segments of {vector_index.ANN_MIN_PASSAGES:,} passages and more).",
        choices=vector_index.SETTINGS,
    )
    api_key: str = _setting("", "Bearer key for the write endpoints (POST/PUT/DELETE /documents); unset: writes off.")
    read_key: str = _setting("", "Bearer key for the read endpoints of the default collection; unset: reads are open.")
    admin_key: str = _setting(
        "", "Bearer key that creates and deletes collections and keys (and may read and write every collection)."
    )
    admin_key_file: str = _setting("", "File holding the admin key (first line), instead of CITELINE_ADMIN_KEY.")
    collections_dir: str = _setting(
        "", "Folder of the named collections (a store each) and their keys; unset: `collections` in the index."
    )
    max_body_bytes: int = _setting(10_000_000, "Largest request body accepted, in bytes (else 413).")
    max_upload_bytes: int = _setting(
        200_000_000, "Largest multipart upload to POST /documents, all files together, in bytes (else 413)."
    )
    max_import_bytes: int = _setting(
        50_000_000_000, "Largest archive POST /collections/{name}/import takes, and unpacks to, in bytes (else 413)."
    )
    max_upload_files: int = _setting(100, "Most files in one multipart upload to POST /documents.")
    max_document_chars: int = _setting(
        1_000_000, "Longest document text accepted, in characters: through the API, or extracted from a file."
    )
    max_file_bytes: int = _setting(100_000_000, "Largest file (PDF, HTML, DOCX, text) read from a source, in bytes.")
    max_pdf_pages: int = _setting(5_000, "Most pages a PDF may have to be read.")
    request_timeout_seconds: float = _setting(
        30.0, "Longest a request may run before it is answered 503 with Retry-After (0: no limit)."
    )
    max_queued_writes: int = _setting(
        8, "Writes that may wait while another is written; more are answered 503 with Retry-After (0: no limit)."
    )
    shutdown_seconds: float = _setting(
        30.0, "On SIGTERM: how long requests in flight may take to finish before the server exits anyway (0: wait)."
    )
    keep_alive_seconds: float = _setting(
        65.0,
        "How long `serve` keeps an idle keep-alive connection open; longer than clients and proxies keep theirs "
        "(httpx 5 s, nginx and AWS ALB 60 s), so they close it first and never reuse one the server is closing.",
    )
    log_format: str = _setting("text", "Log lines as key=value text or JSON lines.", choices=("text", "json"))

    def __post_init__(self) -> None:
        for f in fields(self):
            choices = f.metadata["choices"]
            if choices and getattr(self, f.name) not in choices:
                raise ValueError(
                    f"{ENV_PREFIX}{f.name.upper()}={getattr(self, f.name)!r} is not one of {', '.join(choices)}"
                )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then `CITELINE_*` variables, then the `overrides` that are not None (CLI flags)."""
        environ = dict(os.environ if environ is None else environ)
        for old, new in DEPRECATED.items():
            old_variable, new_variable = ENV_PREFIX + old.upper(), ENV_PREFIX + new.upper()
            if environ.get(old_variable):
                warnings.warn(f"{old_variable} is deprecated: set {new_variable}", DeprecationWarning, stacklevel=2)
                logging.getLogger(__name__).warning("%s is deprecated: set %s", old_variable, new_variable)
                environ.setdefault(new_variable, environ[old_variable])
        values: dict[str, Any] = {}
        for f in fields(cls):
            variable = ENV_PREFIX + f.name.upper()
            raw = environ.get(variable)
            if not raw:
                continue
            kind: type = type(f.default)
            try:
                values[f.name] = parse_bool(raw) if kind is bool else kind(raw)
            except ValueError as error:
                raise ValueError(f"{variable}={raw!r} is not a valid {kind.__name__}") from error
        return replace(cls(**values), **{k: v for k, v in overrides.items() if v is not None})

    def file_limits(self) -> Limits:
        """The bounds on one file of a source."""
        return Limits(max_bytes=self.max_file_bytes, max_pages=self.max_pdf_pages, max_chars=self.max_document_chars)

    def collections_path(self) -> Path:
        """Where the named collections and the key file live."""
        return Path(self.collections_dir) if self.collections_dir else self.index / "collections"

    def admin_secret(self) -> str:
        """The admin key, from `admin_key` or the first line of `admin_key_file` ("" when neither is set)."""
        if self.admin_key or not self.admin_key_file:
            return self.admin_key
        try:
            lines = Path(self.admin_key_file).read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise ValueError(f"{ENV_PREFIX}ADMIN_KEY_FILE={self.admin_key_file!r} cannot be read: {error}") from error
        return lines[0].strip() if lines else ""

    def watch_list(self) -> list[Path]:
        """`watch` split into folders."""
        return [Path(s.strip()) for s in self.watch.split(",") if s.strip()]

    def source_list(self) -> list[str]:
        """`sources` split into paths."""
        return [s.strip() for s in self.sources.split(",") if s.strip()]


def parse_bool(raw: str) -> bool:
    """`1/true/yes/on` or `0/false/no/off`, any case."""
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def add_flags(parser: argparse.ArgumentParser, names: Sequence[str], bare: dict[str, str] | None = None) -> None:
    """One flag per setting in `names` (`--passage-tokens` for `passage_tokens`), its type, choices and help taken
    from `Settings`: a setting's name, default and help are written once, here. A flag named in `bare` may be
    given without a value, meaning the value `bare` maps it to (`--ray` for `--ray local`)."""
    by_name = {f.name: f for f in fields(Settings)}
    bare = bare or {}
    for name in names:
        setting = by_name[name]
        default = setting.default
        kind: Any = Path if isinstance(default, Path) else parse_bool if isinstance(default, bool) else type(default)
        shown = f"default {default}" if default not in ("", None) else "no default"
        optional: dict[str, Any] = {"nargs": "?", "const": bare[name]} if name in bare else {}
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            choices=setting.metadata["choices"] or None,
            metavar=None if setting.metadata["choices"] else name.upper(),
            help=f"{setting.metadata['help'].rstrip('.')} ({ENV_PREFIX}{name.upper()}, {shown})",
            **optional,
        )
        for old in (o for o, new in DEPRECATED.items() if new == name):  # old spelling, still accepted, unlisted
            parser.add_argument("--" + old.replace("_", "-"), dest=name, type=kind, help=argparse.SUPPRESS)


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """The settings a parsed command line gives (flags that were not given are None: the environment decides)."""
    return {f.name: getattr(args, f.name, None) for f in fields(Settings)}


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting: for `--help` and the README."""
    return [(ENV_PREFIX + f.name.upper(), str(f.default), f.metadata["help"]) for f in fields(Settings)]
