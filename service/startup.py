"""Starting a service: the model, the index made ready for it (sources indexed, older formats migrated, an
empty index to write into), and the checks that they belong together."""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial
from pathlib import Path

from indexer.build import PrepareBatches, open_or_create, sync_index
from indexer.model.embedding import Embedder, ModelInfo
from indexer.model.encoders import index_encoder_cache
from indexer.store.migrate import migrate_if_needed
from indexer.store.store import SegmentPolicy, Store, StoreError, is_store, writer_lock
from indexer.text.chunking import ChunkerConfig
from indexer.text.documents import Document, read_sources
from indexer.text.lexical import BM25Config
from service.settings import Settings

logger = logging.getLogger(__name__)


class ModelMismatchError(StoreError):
    """The index was embedded with another model than the one this process runs."""


def segment_policy(settings: Settings) -> SegmentPolicy:
    return SegmentPolicy(settings.seal_passages, settings.max_segments, settings.vector_index)


def check_model(built_with: ModelInfo, embedder: Embedder, index_dir: Path) -> None:
    """Refuse to serve an index whose vectors come from another model (answers would be silently wrong)."""
    if built_with.fingerprint != embedder.info.fingerprint or built_with.dimension != embedder.info.dimension:
        raise ModelMismatchError(
            f"index at {index_dir} was built with model {built_with.name!r} ({built_with.path}, "
            f"fingerprint {built_with.fingerprint[:12]}); this server runs {embedder.info.name!r} "
            f"({embedder.info.path}, fingerprint {embedder.info.fingerprint[:12]}): re-index, "
            f"or set CITELINE_MODEL={built_with.path}"
        )


def load_embedder(settings: Settings, spin: bool = False) -> Embedder:
    """The model on the configured encoder; ONNX exports are cached in `encoder_cache`, else the index directory.
    `spin` only where nothing else must run meanwhile (`citeline index`, `eval`): not in a server."""
    return Embedder(
        settings.model,
        batch_size=settings.batch_size,
        encoder=settings.encoder,
        query_encoder=settings.query_encoder,
        cache_dir=index_encoder_cache(settings.index),
        threads=settings.threads,
        shared_cache=Path(settings.encoder_cache) if settings.encoder_cache else None,
        spin=spin,
    )


def actor_embedder(settings: Settings, threads: int) -> Embedder:
    """The model as a Ray encoder actor loads it (indexer/cluster.py): `threads` threads, no busy-waiting (the
    actors of a node share its cores)."""
    return load_embedder(replace(settings, threads=threads))


def chunker_config(settings: Settings, embedder: Embedder) -> ChunkerConfig:
    """Chunker settings for this model: the target size is capped by the model's token limit."""
    return ChunkerConfig(
        passage_tokens=min(settings.passage_tokens, embedder.token_limit),
        overlap_sentences=settings.overlap_sentences,
        token_limit=embedder.token_limit,
        embed_title=settings.embed_title,
    )


def stored_originals(index: Path) -> dict[str, Document]:
    """The stored documents that keep an original file, by source (none when there is no index yet)."""
    if not is_store(index):
        return {}
    store = Store.open(index)
    try:
        return store.records.documents_with_originals()
    finally:
        store.close()


def index_sources(
    settings: Settings, embedder: Embedder, show_progress: bool = True, prepare_batches: PrepareBatches | None = None
) -> None:
    """Bring the index up to date with `settings.sources` (only new or changed documents are embedded).

    Documents written through the API are kept; documents of the sources replace the rest. `prepare_batches`:
    where the cutting and embedding run (default: here; `ray_index` passes a Ray cluster's).
    """
    migrate_if_needed(settings.index)
    loaded = read_sources(
        settings.source_list(), settings.file_limits(), stored_originals(settings.index), show_progress
    )
    report = sync_index(
        loaded.documents,
        settings.index,
        embedder,
        chunker_config(settings, embedder),
        show_progress=show_progress,
        keep_api_documents=True,
        segments=segment_policy(settings),
        keep=[f.doc_id for f in loaded.failures if f.doc_id],
        prepare_batches=prepare_batches,
    )
    logger.info(
        "indexed %d documents (%d passages, %d embedded, %d reused, %d removed) in %.1fs; %d files skipped",
        report.documents,
        report.passages,
        report.embedded_passages,
        report.reused_documents,
        report.removed_documents,
        report.seconds,
        len(loaded.failures),
    )


def index_shards(settings: Settings, embedder: Embedder, shards: int, show_progress: bool = True) -> list[Path]:
    """`index_sources` for an index split into `shards` stores (service/shards.py): the sources read once,
    each document indexed into the store of the shard that owns it. Returns the shards' directories."""
    from service.shards import partition, shard_dirs

    folders = shard_dirs(settings.index, shards)
    for folder in folders:
        if not is_store(folder):
            folder.mkdir(parents=True, exist_ok=True)
            with writer_lock(folder):
                open_or_create(folder, embedder, chunker_config(settings, embedder), BM25Config()).close()
    if not settings.source_list():
        return folders
    originals = {source: d for folder in folders for source, d in stored_originals(folder).items()}
    loaded = read_sources(settings.source_list(), settings.file_limits(), originals, show_progress)
    failed = [f.doc_id for f in loaded.failures if f.doc_id]
    for folder, owned in zip(folders, partition(loaded.documents, shards), strict=True):
        sync_index(
            owned,
            folder,
            embedder,
            chunker_config(settings, embedder),
            show_progress=show_progress,
            keep_api_documents=True,
            segments=segment_policy(settings),
            keep=failed,
        )
    return folders


def need_ray() -> None:
    """ValueError, saying how to install it, when the optional Ray extra is missing."""
    try:
        import ray  # noqa: F401
    except ImportError as error:
        raise ValueError(
            f"--ray needs the Ray extra ({error}): pip install 'citeline[ray]' (or make install-ray)"
        ) from None


def ray_index(settings: Settings, embedder: Embedder, show_progress: bool = True) -> None:
    """`index_sources` with the cutting and embedding on the Ray cluster `settings.ray` (one started here for
    `local`, and stopped after)."""
    need_ray()
    import ray

    from indexer import cluster

    started = not ray.is_initialized()
    cluster.connect(settings.ray, settings.ray_object_store_mb * 2**20)
    try:
        plan = cluster.plan(settings.ray_actors, settings.threads)
        prepare_batches = cluster.ray_prepare(partial(actor_embedder, settings), plan)
        index_sources(settings, embedder, show_progress, prepare_batches)
    finally:
        if started:
            ray.shutdown()


def prepare_index(settings: Settings, embedder: Embedder | None = None) -> Embedder | None:
    """Make the index named by `settings` ready to load: `settings.sources` indexed first if any, a format 1
    or 2 index migrated (no re-embedding), and with writes enabled (`CITELINE_API_KEY`) or a folder to watch
    and no index yet, an empty one created to write into. Returns the model if this needed it (so it is loaded once)."""
    if settings.source_list():
        embedder = embedder or load_embedder(settings)
        index_sources(settings, embedder)
        return embedder
    migrate_if_needed(settings.index)
    if (settings.api_key or settings.watch_list()) and not is_store(settings.index):
        logger.info("no index at %s: starting an empty one to add documents to", settings.index)
        embedder = embedder or load_embedder(settings)
        with writer_lock(settings.index):
            open_or_create(settings.index, embedder, chunker_config(settings, embedder), BM25Config()).close()
    return embedder
