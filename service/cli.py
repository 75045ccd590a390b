"""`citeline`: index sources, serve the HTTP API, search or evaluate from the shell."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from service.logs import configure_logging
from service.settings import Settings, add_flags, overrides_from, settings_table

logger = logging.getLogger("citeline")
# Settings every command takes as flags; each command adds its own (`index --passage-tokens`, `serve --port`).
COMMON_SETTINGS = ["index", "model", "log_level", "encoder", "query_encoder", "threads", "encoder_cache"]


def _settings_epilog() -> str:
    rows = "\n".join(
        f"  {name:<28} {help_text} (default: {default or 'none'})" for name, default, help_text in settings_table()
    )
    return f"settings (environment variables; flags override them):\n{rows}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citeline",
        description="Retrieval question answering with exact citations over your documents.",
        epilog=_settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_common(sub: argparse.ArgumentParser, collection: bool = True) -> None:
        add_flags(sub, COMMON_SETTINGS)
        if collection:
            sub.add_argument(
                "--collection",
                metavar="NAME",
                help="work on this named collection (a folder of CITELINE_COLLECTIONS_DIR, made with "
                "POST /collections) instead of the default one at --index",
            )
            add_flags(sub, ["collections_dir"])

    index = commands.add_parser(
        "index",
        help="build or update an index from folders and JSONL files",
        description="Index documents. Re-running on the same index embeds only new or changed documents "
        "and drops removed ones.",
    )
    index.add_argument(
        "sources",
        nargs="*",
        help="folders (recursive: PDF, HTML, DOCX, Markdown, text; a file that cannot be read is skipped with its "
        "reason), single files, or JSONL files (BEIR corpus.jsonl)",
    )
    add_common(index)
    index.add_argument(
        "--verify",
        type=Path,
        metavar="DIR",
        help="check the index in DIR instead: the record file's integrity, every citation inside its document, "
        "the BM25 index against the records (exit 1 naming the first problem)",
    )
    add_flags(index, ["passage_tokens", "overlap_sentences", "batch_size"])
    add_flags(index, ["ray", "ray_actors", "ray_object_store_mb"], bare={"ray": "local"})
    index.add_argument("--quiet", action="store_true", help="no progress bars")

    serve = commands.add_parser("serve", help="serve the HTTP API (OpenAPI docs at /docs)")
    add_common(serve, collection=False)
    add_flags(serve, ["host", "port", "sources", "watch", "collections_dir"])
    add_flags(serve, ["ray", "shards", "ray_object_store_mb"], bare={"ray": "local"})

    migrate = commands.add_parser(
        "migrate",
        help="move an index of format 1 or 2 (snapshots) to format 3, keeping its vectors",
        description="Migrate an index built by an older release: its documents, passages and vectors go into "
        "records.sqlite and a new BM25 index; nothing is re-embedded. `serve` and `index` do it too, saying so.",
    )
    add_common(migrate)

    backup = commands.add_parser(
        "backup",
        help="copy an index consistently while it serves",
        description="Copy the index (record file through SQLite's backup API, BM25 index as of the same write) "
        "into DEST, a new directory, and verify the copy. A server keeps serving and waits for it to write.",
    )
    backup.add_argument("dest", type=Path, help="new directory for the copy")
    add_common(backup)

    repair = commands.add_parser(
        "repair",
        help="rebuild the BM25 index and vector segments from the record file (no re-embedding)",
        description="For a damaged, missing or truncated segment or BM25 file: both are derived from "
        "records.sqlite, so they are rebuilt from it, then the index is verified. Writers wait meanwhile.",
    )
    add_common(repair)

    export = commands.add_parser(
        "export",
        help="write a collection as one portable archive (documents, originals, vectors, checksums)",
        description="Write the index (or --collection NAME) as a tar archive at OUT: a consistent copy taken "
        "while it serves, with a manifest of every file's SHA-256 and the model of its vectors. `citeline import` "
        "or POST /collections/{name}/import restores it elsewhere without parsing or embedding again.",
    )
    export.add_argument("out", type=Path, help="the archive to write (a new file), e.g. wire.citeline.tar")
    add_common(export)

    restore = commands.add_parser(
        "import",
        help="make a named collection from an archive of `citeline export`",
        description="Check ARCHIVE whole (every file's SHA-256, then the index verified) and make collection "
        "NAME from it in CITELINE_COLLECTIONS_DIR; a server serving that folder picks it up when it restarts. "
        "Vectors of another model are embedded again with this one, saying so.",
    )
    restore.add_argument("archive", type=Path)
    restore.add_argument("name", help="the new collection's name (a-z, 0-9, '_', '-'; 1-64)")
    visibility = restore.add_mutually_exclusive_group()
    visibility.add_argument("--public", dest="public", action="store_true", default=None, help="readable by anyone")
    visibility.add_argument("--private", dest="public", action="store_false", help="readable with a key only")
    add_common(restore, collection=False)
    add_flags(restore, ["collections_dir"])

    mcp = commands.add_parser(
        "mcp",
        help="serve the index to an agent over the Model Context Protocol (stdio)",
        description="Run an MCP server on stdin/stdout with the tools `search` and `get_document` and the "
        "documents as resources, for a desktop agent: configure the agent to start `citeline mcp --index DIR`. "
        "Logs go to stderr. (`citeline serve` also serves MCP over HTTP at /mcp, with the REST API's keys.)",
    )
    add_common(mcp)

    search = commands.add_parser("search", help="answer one question from the shell, without a server")
    search.add_argument("question")
    add_common(search)
    search.add_argument("-k", type=int, default=5, help="number of passages (1-100, default 5)")
    search.add_argument("--mode", choices=["hybrid", "dense", "bm25"], default="hybrid")
    search.add_argument("--json", action="store_true", help="print the same JSON as the HTTP API")

    reindex = commands.add_parser(
        "reindex",
        help="ask a running server to reindex a collection with new settings, and follow the job",
        description="Start a shadow reindex on the server at --url (the server builds the new index beside the "
        "live one, evaluates both on the collection's questions and switches only if no metric drops) and show "
        "its progress until it ends. Exit 0 when it switched, 1 when it was refused, 2 on an error. The key is "
        "CITELINE_API_KEY, or --key (a key with the write scope on the collection, or the admin key).",
    )
    reindex.add_argument("--url", help="the server (default http://HOST:PORT of the settings)")
    reindex.add_argument("--collection", metavar="NAME", help="a named collection (default: the default one)")
    reindex.add_argument("--key", help="bearer key (default: CITELINE_ADMIN_KEY or CITELINE_API_KEY)")
    reindex.add_argument("--questions", type=Path, help="QA lines to set as the collection's questions first")
    reindex.add_argument("--metric", action="append", dest="metrics", help="a metric that may not drop (repeat)")
    reindex.add_argument("--threshold", type=float, help="the largest drop allowed (default 0.005)")
    reindex.add_argument("--force", action="store_true", help="switch even if a metric drops")
    add_flags(reindex, ["passage_tokens", "overlap_sentences", "host", "port", "log_level"])

    evaluate = commands.add_parser(
        "eval",
        help="measure retrieval quality on a BEIR folder or a QA file",
        description="Run every query of DATASET and print nDCG@10, recall@1/3/5/10/100 and MRR@10. "
        "DATASET is a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv; judged per document, "
        "a document ranks where its first passage does) or a QA JSONL file of {q, doc_id, answer?} "
        "(judged per passage: a passage of doc_id that contains answer).",
    )
    evaluate.add_argument("dataset", type=Path)
    add_common(evaluate)
    evaluate.add_argument("--mode", choices=["hybrid", "dense", "bm25", "all"], default="all")
    evaluate.add_argument("--k", type=int, default=100, help="passages retrieved per query (default 100)")
    evaluate.add_argument("--build", action="store_true", help="index the BEIR corpus into --index first")
    evaluate.add_argument("--sample", type=int, help="evaluate a fixed random sample of N queries (seed 0)")
    evaluate.add_argument(
        "--half",
        choices=["dev", "heldout"],
        help="only one half of the queries, split by a stable hash of the relevant document's title "
        "(a SQuAD article): tune on dev, report on heldout",
    )
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    return parser


def _run_eval(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from service.engine import Engine
    from service.evaluation.evaluate import corpus_groups, evaluate, load_dataset, split_half
    from service.search.retrieval import Mode
    from service.startup import index_sources, load_embedder

    dataset = load_dataset(args.dataset)
    if args.half:
        dataset = split_half(dataset, args.half, corpus_groups(dataset.corpus) if dataset.corpus else None)
    if args.sample and args.sample < len(dataset.queries):
        dataset = replace(dataset, queries=random.Random(0).sample(dataset.queries, args.sample))
    embedder = load_embedder(settings, spin=True)
    if args.build:
        if dataset.corpus is None:
            print("citeline: --build needs a BEIR folder (a QA file has no corpus)", file=sys.stderr)
            return 2
        index_sources(_with_sources(settings, [str(dataset.corpus)]), embedder)
    engine = Engine.load(settings, embedder=embedder)
    modes = list(Mode) if args.mode == "all" else [Mode(args.mode)]
    results = evaluate(
        engine.state.retriever,
        dataset,
        modes,
        encode_queries=embedder.encode_queries,
        depth=args.k,
        show_progress=sys.stderr.isatty(),  # a bar on a terminal; a pipe or a log gets no carriage returns
    )
    if args.json:
        print(json.dumps({"dataset": dataset.name, "kind": dataset.kind, "results": results}, indent=2))
        return 0
    columns = ["ndcg@10", "recall@1", "recall@3", "recall@5", "recall@10", "recall@100", "mrr@10"]
    columns += ["highlight@1"] if any("highlight@1" in m for m in results.values()) else []
    print(f"{dataset.name} ({dataset.kind}, {len(dataset.queries)} queries)")
    print(f"{'mode':<8}" + "".join(f"{c:>12}" for c in columns))
    for mode, metrics in results.items():
        print(f"{mode:<8}" + "".join(f"{metrics[c]:>12.3f}" for c in columns))
    return 0


def _settings(args: argparse.Namespace) -> Settings:
    """The settings of the command line; with `--collection`, `index` is that collection's store."""
    from dataclasses import replace

    from service.collections import DEFAULT, META_FILE, NAME_RULE, valid_name

    settings = Settings.from_env(**overrides_from(args))
    name = getattr(args, "collection", None) if args.command != "reindex" else None  # reindex asks a server
    if name is None or name == DEFAULT:
        return settings
    if not valid_name(name):
        raise ValueError(f"--collection {name!r}: a name is {NAME_RULE}")
    folder = settings.collections_path() / name
    if not (folder / META_FILE).is_file():
        raise ValueError(
            f"no collection named {name!r} in {settings.collections_path()}: create it with POST /collections "
            "(see the README, 'Collections and keys'), or set CITELINE_COLLECTIONS_DIR"
        )
    return replace(settings, index=folder)


def _run_verify(index_dir: Path) -> int:
    from indexer.store.legacy import LegacyIndexError
    from indexer.store.maintenance import verify_index
    from indexer.store.records import RecordsError
    from indexer.store.store import StoreError

    try:
        print(verify_index(index_dir).summary())
    except (StoreError, RecordsError, LegacyIndexError) as error:
        print(f"citeline: index is damaged: {error}", file=sys.stderr)
        return 1
    return 0


def _run_migrate(settings: Settings) -> int:
    from indexer.store.migrate import migrate
    from indexer.store.store import is_legacy, is_store

    if not is_legacy(settings.index):
        state = "is already format 3" if is_store(settings.index) else "holds no index"
        print(f"citeline: {settings.index} {state}: nothing to migrate")
        return 0
    print(f"migrated {migrate(settings.index)} documents into {settings.index} (format 3)")
    return 0


def _run_backup(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.store.maintenance import backup

    print(backup(settings.index, args.dest).summary())
    return 0


def _run_export(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.store.archive import write_archive

    manifest = write_archive(settings.index, args.out, {"collection": args.collection or "default"})
    print(f"exported {manifest.documents} documents, {manifest.passages} passages to {args.out}")
    return 0


def _run_import(args: argparse.Namespace, settings: Settings) -> int:
    from service.collections import restore
    from service.startup import load_embedder

    folder = settings.collections_path()
    manifest, reembedded = restore(
        args.archive, folder, args.name, load_embedder(settings), settings, args.public, settings.max_import_bytes
    )
    how = "embedded again with this model" if reembedded else "vectors kept"
    print(f"imported {manifest.documents} documents into collection {args.name!r} ({folder / args.name}), {how}")
    return 0


def _run_reindex(args: argparse.Namespace, settings: Settings) -> int:
    """`citeline reindex`: a client of the server's reindex endpoint (only the server may swap what it serves)."""
    import time
    import urllib.error
    import urllib.request

    from tqdm import tqdm

    base = (args.url or f"http://{settings.host}:{settings.port}").rstrip("/")
    prefix = f"{base}/collections/{args.collection}" if args.collection else base
    key = args.key or settings.admin_secret() or settings.api_key

    def call(method: str, url: str, body: bytes | None = None, kind: str = "application/json") -> dict:
        request = urllib.request.Request(url, data=body, method=method)
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        if body is not None:
            request.add_header("Content-Type", kind)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")
            raise ValueError(f"{method} {url}: {error.code} {detail}") from None
        except urllib.error.URLError as error:
            raise ValueError(f"no server answers at {base} ({error.reason}): start it, or give --url") from None
        return json.loads(raw) if raw else {}

    if args.questions is not None:
        call("PUT", f"{prefix}/eval", args.questions.read_bytes(), "application/x-ndjson")
    plan: dict[str, object] = {"force": args.force}
    for name in ("passage_tokens", "overlap_sentences", "threshold", "metrics"):
        if getattr(args, name, None) is not None:
            plan[name] = getattr(args, name)
    job = call("POST", f"{prefix}/reindex", json.dumps(plan).encode())
    with tqdm(desc="reindex", unit="doc", disable=not sys.stderr.isatty()) as bar:
        while job["state"] not in ("done", "failed"):
            time.sleep(1)
            job = call("GET", f"{prefix}/jobs/{job['id']}")
            bar.total = job["total"] or None
            bar.n = job["done"]
            bar.set_postfix_str((job.get("reindex") or {}).get("phase", job["state"]))
            bar.refresh()
    if job["state"] == "failed":
        print(f"citeline: the reindex failed: {job['error']}", file=sys.stderr)
        return 2
    report = job["reindex"]
    for label, figures in (("before", report["before"]), ("after", report["after"])):
        if figures:
            print(f"{label:<7}" + "".join(f"  {name} {value:.4f}" for name, value in figures.items()))
    print(f"{report['decision']} in {report['seconds']} s: {report['settings']}")
    for reason in report["reasons"]:
        print(f"  {reason}")
    return 1 if report["decision"] == "refused" else 0


def _run_repair(settings: Settings) -> int:
    from indexer.store.maintenance import repair

    print(repair(settings.index, settings.vector_index).summary())
    return 0


def _run_index(args: argparse.Namespace, settings: Settings) -> int:
    from service.startup import index_sources, load_embedder, ray_index

    if args.verify is not None:
        return _run_verify(args.verify)
    if not args.sources:
        print("citeline: index needs at least one SOURCE (or --verify DIR)", file=sys.stderr)
        return 2

    settings = _with_sources(settings, args.sources)
    if settings.ray:
        # The model here only names the settings and counts tokens: the actors embed.
        ray_index(settings, load_embedder(settings), show_progress=not args.quiet)
        return 0
    embedder = load_embedder(settings, spin=True)  # nothing else runs: busy-waiting threads encode faster
    index_sources(settings, embedder, show_progress=not args.quiet)
    return 0


def _run_serve_on_ray(settings: Settings) -> int:
    from dataclasses import replace

    if settings.shards < 1:
        raise ValueError("serve --ray needs --shards N (N >= 1): the stores the collection is split into")
    if settings.watch_list():
        raise ValueError("serve --ray does not watch folders (CITELINE_WATCH): index them with --sources")
    from service.startup import need_ray

    need_ray()
    from indexer import cluster
    from service.ray_serve import serve_sharded

    settings = replace(settings, ray=settings.ray or cluster.LOCAL)
    return serve_sharded(settings, lambda: cluster.connect(settings.ray, settings.ray_object_store_mb * 2**20))


def _with_sources(settings: Settings, sources: Sequence[str]) -> Settings:
    from dataclasses import replace

    return replace(settings, sources=",".join(sources))


def _stopped_by(signum: int, frame: object) -> None:
    """Replaces the default SIGTERM/SIGINT action, which uvicorn re-raises after its graceful shutdown."""
    logger.info("stopped by %s", signal.Signals(signum).name)


def _run_serve(settings: Settings) -> int:
    if settings.ray or settings.shards:
        return _run_serve_on_ray(settings)
    import uvicorn

    from service.api.app import create_app
    from service.engine import Engine
    from service.startup import prepare_index

    engine = Engine.load(settings, embedder=prepare_index(settings))
    # uvicorn stops accepting on SIGTERM, lets requests in flight finish for up to shutdown_seconds, then
    # re-raises the signal: with this handler in place that ends in a clean exit 0, not death by signal.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stopped_by)
    uvicorn.run(
        create_app(settings, engine=engine),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # our handler and format (text or JSON) for uvicorn's lines too
        access_log=False,  # the app logs each request itself, with its request id
        timeout_graceful_shutdown=math.ceil(settings.shutdown_seconds) or None,
        # uvicorn's 5 s equals httpx's idle expiry: a client then reuses a connection at the moment the
        # server closes it and gets no response (a few in a thousand requests after a 5 s pause).
        timeout_keep_alive=max(1, math.ceil(settings.keep_alive_seconds)),
    )
    # Requests cut at the deadline still hold worker threads, which Python would wait for at exit: leave
    # without them (a write cut short is either stored whole or not at all, as in a crash).
    busy = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    for thread in busy:
        thread.join(timeout=1.0)
    if any(t.is_alive() for t in busy):
        seconds = settings.shutdown_seconds
        logger.warning("exiting with requests still running after %g s (CITELINE_SHUTDOWN_SECONDS)", seconds)
        logging.shutdown()
        os._exit(0)
    return 0


def _run_search(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from service.api.results import search_response
    from service.api.schemas import SearchRequest
    from service.engine import Engine

    try:
        request = SearchRequest(q=args.question, k=args.k, mode=args.mode)
    except ValidationError as error:
        print(f"citeline: {error.errors()[0]['loc'][0]}: {error.errors()[0]['msg']}", file=sys.stderr)
        return 2
    response = search_response(request, Engine.load(settings))
    if args.json:
        print(response.model_dump_json(indent=2))
        return 0
    for result in response.results:
        c = result.citation
        where = f"{c.doc_id} {c.start}:{c.end}"
        if c.page:
            where += f" p. {c.page}" + (f"-{c.page_end}" if c.page_end and c.page_end != c.page else "")
        if c.section:
            where += f" § {c.section}"
        print(f"{result.rank}. [{where}] {c.title or ''} (score {result.score:.4f})")
        print(f"   {' '.join(result.text.split())}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ValueError as error:
        print(f"citeline: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    from indexer.errors import CitelineError

    try:
        if args.command == "index":
            return _run_index(args, settings)
        if args.command == "serve":
            return _run_serve(settings)
        if args.command == "eval":
            return _run_eval(args, settings)
        if args.command == "migrate":
            return _run_migrate(settings)
        if args.command == "backup":
            return _run_backup(args, settings)
        if args.command == "repair":
            return _run_repair(settings)
        if args.command == "mcp":
            from service.engine import Engine
            from service.mcp import run_stdio

            run_stdio(Engine.load(settings), args.collection or "default")
            return 0
        if args.command == "reindex":
            return _run_reindex(args, settings)
        if args.command == "export":
            return _run_export(args, settings)
        if args.command == "import":
            return _run_import(args, settings)
        return _run_search(args, settings)
    except (CitelineError, ValueError) as error:
        print(f"citeline: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
