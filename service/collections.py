"""The collections one server serves: `default` (the store at `CITELINE_INDEX`, as before collections) and
named ones, each a store of its own in the collections folder, with its own engine and job queue; one
model serves them all.

A named collection is a folder `<collections>/<name>/` holding a store and `collection.json`. It is built
whole in a hidden staging folder and renamed into place, and deleted by a rename out of place before its
files are removed, so a crash at any point leaves the whole collection or none (leftovers are removed at
the next start). Names are checked against `NAME` before they touch the file system.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from indexer.build import open_or_create, sync_index
from indexer.errors import CitelineError
from indexer.model.embedding import Embedder
from indexer.store.archive import STORE, ArchiveManifest, read_archive
from indexer.store.originals import Originals
from indexer.store.store import Store, writer_lock
from indexer.text.lexical import BM25Config
from service.engine import Engine
from service.jobs import Jobs
from service.reindex import (
    EVAL_FILE,
    SHADOW,
    SWITCH_FILE,
    Plan,
    ReindexError,
    Report,
    build_shadow,
    catch_up,
    drops,
    eval_questions,
    measure,
    previous_of,
    read_switch_mark,
    retire_later,
    swap_folders,
    write_switch_mark,
)
from service.settings import Settings
from service.startup import chunker_config

logger = logging.getLogger(__name__)
DEFAULT = "default"
NAME = re.compile(r"[a-z0-9_-]{1,64}")  # ASCII only: no look-alikes, no case variants, no path parts
NAME_RULE = "1 to 64 characters, each a lowercase ASCII letter, a digit, '_' or '-'"
META_FILE = "collection.json"
STAGING, DELETING, EXPORTING = ".creating-", ".deleting-", ".export-"
# `.shadow-` (a reindex's new index) and `.previous-` (the index it replaced) folders: service/reindex.py

FilesCounter = Callable[[str, str, str, int], None]  # (collection, kind, outcome, count)


class CollectionError(CitelineError):
    """A collection request that breaks a rule (its name, its settings)."""


class CollectionStorageError(CitelineError):
    """The collections folder could not be written (full, read-only): nothing was created."""


class UnknownCollectionError(CitelineError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no collection is named {name!r}: GET /collections lists them")
        self.name = name


class CollectionExistsError(CitelineError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a collection named {name!r} exists: choose another name or delete it first")


def valid_name(name: str) -> bool:
    return NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class CollectionInfo:
    """What a collection is: its name, whether anyone may read it, when it was made."""

    name: str
    public: bool
    created: float | None  # None for `default`, which predates collections


@dataclass(frozen=True)
class Imported:
    """A collection made from an archive, and whether its vectors had to be made again."""

    live: Live
    documents: int
    passages: int
    reembedded: bool


@dataclass
class Live:
    """One served collection."""

    info: CollectionInfo
    engine: Engine
    jobs: Jobs

    @property
    def name(self) -> str:
        return self.info.name


class Collections:
    """Every collection a server serves, by name; created and deleted while it serves.

    Readers take the current mapping without a lock (it is replaced whole, never changed in place);
    creation and deletion hold `_lock`."""

    def __init__(
        self, settings: Settings, embedder: Embedder, default: Engine, on_files: FilesCounter | None = None
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.folder = settings.collections_path()
        self._on_files = on_files or (lambda collection, kind, outcome, count: None)
        self._lock = threading.Lock()
        # `default` is public unless CITELINE_READ_KEY says otherwise, as before collections.
        self._live = {DEFAULT: self._serve(CollectionInfo(DEFAULT, not settings.read_key, None), default)}
        home = default.index_dir  # a refused or interrupted reindex of `default` leaves its shadow beside it
        for path in home.parent.glob(f"{SHADOW}{home.name}-*"):
            logger.warning("removing %s, the new index of a reindex that did not switch", path)
            shutil.rmtree(path, ignore_errors=True)
        if self.folder.is_dir():
            self._clean_leftovers()
            for path in sorted(self.folder.iterdir()):
                if path.is_dir() and valid_name(path.name) and path.name != DEFAULT and (path / META_FILE).is_file():
                    try:
                        self._live[path.name] = self._open(path)
                    except Exception:  # one damaged collection must not keep the others from being served
                        logger.exception("could not open collection %s; serving the others", path.name)

    # -- reads -------------------------------------------------------------------------------------------
    def get(self, name: str) -> Live:
        """The collection with this name; `UnknownCollectionError` when there is none (or the name is invalid)."""
        live = self._live.get(name) if valid_name(name) else None
        if live is None:
            raise UnknownCollectionError(name)
        return live

    def all(self) -> list[Live]:
        return list(self._live.values())

    def names(self) -> list[str]:
        return list(self._live)

    # -- writes ------------------------------------------------------------------------------------------
    def create(self, name: str, public: bool = False, passage_tokens: int | None = None) -> Live:
        """A new, empty collection, whole or not at all."""
        if not valid_name(name):
            raise CollectionError(f"name {name!r} breaks the rule: {NAME_RULE}")
        with self._lock:
            if name in self._live or (self.folder / name).exists():
                raise CollectionExistsError(name)
            staging = self.folder / f"{STAGING}{name}-{uuid.uuid4().hex[:8]}"
            info = CollectionInfo(name, public, time.time())
            try:
                settings = self._settings(staging, passage_tokens)
                staging.mkdir(parents=True)
                with writer_lock(staging):
                    open_or_create(
                        staging, self.embedder, chunker_config(settings, self.embedder), BM25Config()
                    ).close()
                _write_meta(staging, info)
                os.rename(staging, self.folder / name)  # the collection exists from here on, whole
                _fsync_dir(self.folder)
            except OSError as error:
                shutil.rmtree(staging, ignore_errors=True)
                raise CollectionStorageError(
                    f"could not create collection {name!r} in {self.folder}: {error} (set CITELINE_COLLECTIONS_DIR "
                    "to a writable folder)"
                ) from error
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            live = self._open(self.folder / name)
            self._live = {**self._live, name: live}
        logger.info("created collection %s (%s)", name, "public" if public else "private")
        return live

    def import_archive(self, name: str, archive: Path, public: bool | None = None, max_bytes: int = 0) -> Imported:
        """A new collection from an export, checked whole first (see `restore`)."""
        if not valid_name(name):
            raise CollectionError(f"name {name!r} breaks the rule: {NAME_RULE}")
        with self._lock:
            if name in self._live:
                raise CollectionExistsError(name)
            manifest, reembedded = restore(archive, self.folder, name, self.embedder, self.settings, public, max_bytes)
            live = self._open(self.folder / name)
            self._live = {**self._live, name: live}
        return Imported(live, manifest.documents, manifest.passages, reembedded)

    def reindex(self, name: str, plan: Plan, report: Report, on_progress: Callable[[int, int], None]) -> Report:
        """Build the collection again with `plan`'s settings beside the live one, and switch to it if the
        collection's evaluation questions say it is no worse (`service/reindex.py`); `report` follows it."""
        started = time.monotonic()
        live = self.get(name)
        home = live.engine.index_dir
        dataset = eval_questions(home)
        if dataset is None and not plan.force:
            raise ReindexError(
                f"collection {name!r} has no evaluation questions to judge a reindex by: PUT them to "
                f"{'' if name == DEFAULT else f'/collections/{name}'}/eval first, or reindex with force"
            )
        stored = live.engine.store.settings.chunker
        report.settings = {
            "passage_tokens": plan.passage_tokens or stored.passage_tokens,
            "overlap_sentences": stored.overlap_sentences if plan.overlap_sentences is None else plan.overlap_sentences,
        }
        report.phase = "building"
        source = live.engine  # a switch or rollback meanwhile replaces it: then this reindex stops
        shadow_engine, shadow, since = build_shadow(source, plan, self.settings, on_progress)
        switched = False
        try:
            report.phase = "catching up"
            since = catch_up(source, shadow_engine, since)
            if dataset is not None:
                report.phase = "evaluating"
                report.before, report.after = measure(source, dataset), measure(shadow_engine, dataset)
                report.reasons = drops(report.before, report.after, plan.metrics, plan.threshold)
            if report.reasons and not plan.force:
                report.phase = report.decision = "refused"
                logger.warning("reindex of %s refused, the new index kept in %s: %s", name, shadow, report.reasons)
                return report
            report.decision = "forced" if plan.force and (report.reasons or dataset is None) else "switched"
            self._switch(live, source, shadow_engine, shadow, since)
            switched = True
            report.phase = "switched"
            logger.info("reindex of %s: %s to %s", name, report.decision, report.settings)
            return report
        finally:
            if not switched:
                shadow_engine.close()
            report.seconds = round(time.monotonic() - started, 2)

    def _switch(self, live: Live, old: Engine, shadow_engine: Engine, shadow: Path, since: int) -> None:
        """The shadow in place of the live index (`old`), the live one kept as the previous, between two writes."""
        with self._lock:
            if live.engine is not old:
                shutil.rmtree(shadow, ignore_errors=True)
                raise ReindexError(
                    f"collection {live.name!r} was switched or rolled back while this reindex ran: nothing changed; "
                    "start it again"
                )
            home = old.index_dir
            with old.admission.admit():  # no write runs or starts on the live index until the switch is done
                catch_up(old, shadow_engine, since)
                seq = shadow_engine.store.records.last_seq()
                shadow_engine.close()
                for kept in (EVAL_FILE, META_FILE):
                    if (home / kept).is_file():
                        shutil.copy2(home / kept, shadow / kept)
                previous = previous_of(home)
                swap_folders(home, shadow, previous)
                write_switch_mark(previous, seq)
                self._replace_engine(live, old, "the collection was reindexed")
        retire_later(old)

    def rollback(self, name: str) -> Live:
        """Bring back the index a reindex replaced, with the writes made since the switch carried over."""
        with self._lock:
            live = self.get(name)
            old = live.engine
            home = old.index_dir
            previous = previous_of(home)
            if not previous.is_dir():
                raise ReindexError(f"collection {name!r} has no previous index to roll back to")
            since = read_switch_mark(previous)
            with old.admission.admit():
                restored = Engine.load(self._settings(previous), embedder=self.embedder)
                try:
                    catch_up(old, restored, since)
                    seq = restored.store.records.last_seq()  # where a roll forward would start carrying writes
                finally:
                    restored.close()
                for kept in (EVAL_FILE, META_FILE):
                    if (home / kept).is_file():
                        shutil.copy2(home / kept, previous / kept)
                (previous / SWITCH_FILE).unlink(missing_ok=True)
                aside = home.parent / f"{SHADOW}{home.name}-{uuid.uuid4().hex[:8]}"
                os.rename(home, aside)
                os.rename(previous, home)
                os.rename(aside, previous)
                _fsync_dir(home.parent)
                write_switch_mark(previous, seq)
                self._replace_engine(live, old, "the collection was rolled back")
        retire_later(old)
        logger.info("rolled collection %s back to its previous index", name)
        return live

    def _replace_engine(self, live: Live, old: Engine, why: str) -> None:
        new = Engine.load(self._settings(old.index_dir), embedder=self.embedder)
        old.successor = new  # set before `retired`: a write refused by `old` always finds where to go
        old.retired = why
        live.engine = new
        live.jobs.engine = new

    def delete(self, name: str) -> None:
        """Remove a collection and its files; `default` stays."""
        if name == DEFAULT:
            raise CollectionError("the default collection cannot be deleted (delete its documents instead)")
        with self._lock:
            live = self.get(name)
            self._live = {n: c for n, c in self._live.items() if n != name}
            live.jobs.close()
            live.engine.close()
            gone = self.folder / f"{DELETING}{name}-{uuid.uuid4().hex[:8]}"
            os.rename(self.folder / name, gone)  # from here on the collection is gone, whatever happens next
            _fsync_dir(self.folder)
            shutil.rmtree(gone, ignore_errors=True)
        logger.info("deleted collection %s", name)

    def close(self) -> None:
        """Stop every job queue and close the named collections (the default engine belongs to the caller)."""
        for live in self.all():
            live.jobs.close()
            if live.name != DEFAULT:
                live.engine.close()

    # -- helpers -----------------------------------------------------------------------------------------
    def _settings(self, path: Path, passage_tokens: int | None = None) -> Settings:
        settings = replace(self.settings, index=path, sources="", watch="")
        return settings if passage_tokens is None else replace(settings, passage_tokens=passage_tokens)

    def _serve(self, info: CollectionInfo, engine: Engine) -> Live:
        def count(kind: str, outcome: str, n: int) -> None:
            self._on_files(info.name, kind, outcome, n)

        return Live(info, engine, Jobs(engine, on_files=count))

    def _open(self, path: Path) -> Live:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        info = CollectionInfo(path.name, bool(meta.get("public", False)), meta.get("created"))
        return self._serve(info, Engine.load(self._settings(path), embedder=self.embedder))

    def _clean_leftovers(self) -> None:
        for path in self.folder.iterdir():
            if path.name.startswith((STAGING, DELETING, EXPORTING, SHADOW)):
                logger.warning("removing %s, left by a collection creation or deletion that did not finish", path)
                shutil.rmtree(path, ignore_errors=True)


def _write_meta(folder: Path, info: CollectionInfo) -> None:
    path = folder / META_FILE
    with path.open("w", encoding="utf-8") as handle:
        json.dump({"name": info.name, "public": info.public, "created": info.created}, handle)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def restore(
    archive: Path,
    folder: Path,
    name: str,
    embedder: Embedder,
    settings: Settings,
    public: bool | None = None,
    max_bytes: int = 0,
) -> tuple[ArchiveManifest, bool]:
    """Make collection `name` in `folder` from an export (`indexer/store/archive.py`), whole or not at all:
    the archive is unpacked and checked in a hidden folder, which is renamed into place last. Vectors of
    `embedder`'s model are kept as they are; others are embedded again from the stored documents (True
    returned with the manifest). `public` None keeps the exported collection's visibility."""
    if not valid_name(name) or name == DEFAULT:
        raise CollectionError(f"name {name!r} breaks the rule: {NAME_RULE}, and not {DEFAULT!r}")
    if (folder / name).exists():
        raise CollectionExistsError(name)
    folder.mkdir(parents=True, exist_ok=True)
    work = folder / f"{STAGING}{name}-{uuid.uuid4().hex[:8]}"
    try:
        manifest = read_archive(archive, work, max_bytes)
        store_dir, reembedded = work / STORE, False
        model = embedder.info
        if (manifest.model.get("fingerprint"), manifest.model.get("dimension")) != (model.fingerprint, model.dimension):
            logger.warning(
                "collection %s: the archive's vectors are of model %r, this server runs %r: embedding its %d "
                "documents again",
                name,
                manifest.model.get("name"),
                model.name,
                manifest.documents,
            )
            store_dir, reembedded = _reembed(work / STORE, work / "reembedded", embedder, settings), True
        visible = bool(manifest.meta.get("public", False)) if public is None else public
        _write_meta(store_dir, CollectionInfo(name, visible, time.time()))
        os.rename(store_dir, folder / name)  # whole from here on; before it, not at all
        _fsync_dir(folder)
    except OSError as error:
        raise CollectionStorageError(f"could not import collection {name!r} into {folder}: {error}") from error
    finally:
        shutil.rmtree(work, ignore_errors=True)
    how = "embedded again" if reembedded else "vectors kept"
    logger.info("imported collection %s: %d documents, %s", name, manifest.documents, how)
    return manifest, reembedded


def _reembed(source: Path, target: Path, embedder: Embedder, settings: Settings) -> Path:
    """A store at `target` with `source`'s documents (and original files) embedded by `embedder`, chunked
    as `source` was."""
    store = Store.open(source)
    try:
        chunker = store.settings.chunker
        originals = Originals(source)
        documents = [
            replace(d, original=originals.path(d.layout.original)) if d.layout and d.layout.original else d
            for d in store.load().live_documents()
        ]
    finally:
        store.close()
    local = replace(settings, passage_tokens=chunker.passage_tokens, overlap_sentences=chunker.overlap_sentences)
    sync_index(documents, target, embedder, chunker_config(local, embedder), BM25Config(), show_progress=False)
    return target
