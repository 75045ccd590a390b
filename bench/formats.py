"""`python -m bench.formats` (`make bench-formats`): does retrieval survive PDF, HTML and DOCX? Writes
bench/FORMATS.md.

SQuAD dev's articles are rendered four ways: a text file (title line, paragraphs), a PDF (flowed over
pages with a running header and page numbers, DejaVu Sans so every character survives), an HTML page
(navigation, a script and a footer around the article) and a DOCX. Each rendering is indexed through the
normal path (`sync_index`, extraction included) and asked the same questions, judged by document and
answer string (offsets differ between renderings). For the PDF, every stored passage's `page` is checked
against the page on which its first words stand in PDFium's raw text of that page alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import ROOT
from indexer.build import sync_index
from indexer.model.embedding import Embedder
from indexer.store.store import Store
from indexer.text.documents import load_documents
from service.engine import Engine
from service.evaluation.evaluate import Dataset, Query, evaluate
from service.search.retrieval import Mode, RetrievalConfig
from service.settings import Settings
from service.startup import chunker_config

logger = logging.getLogger("bench.formats")
SQUAD = ROOT.parent / "shared" / "eval" / "squad-dev-v1.1" / "dev-v1.1.json"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
FORMATS = ("txt", "pdf", "html", "docx")
MODES = (Mode.hybrid, Mode.dense, Mode.bm25)


def articles(count: int) -> list[tuple[str, str, list[str], list[tuple[str, str, str]]]]:
    """The first `count` SQuAD dev articles: (file stem, title, paragraphs, [(question id, question, answer)])."""
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"][:count]
    found = []
    for article in data:
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", article["title"])
        paragraphs = [p["context"].strip() for p in article["paragraphs"]]
        qas = [qa for p in article["paragraphs"] for qa in p["qas"]]
        questions = [(qa["id"], qa["question"], qa["answers"][0]["text"]) for qa in qas]
        found.append((stem, article["title"].replace("_", " "), paragraphs, questions))
    return found


def render(folder: Path, kind: str, stem: str, title: str, paragraphs: Sequence[str]) -> None:
    import html

    folder.mkdir(parents=True, exist_ok=True)
    if kind == "txt":
        (folder / f"{stem}.txt").write_text(title + "\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")
    elif kind == "html":
        body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
        page = (
            f"<!DOCTYPE html><html><head><title>{html.escape(title)}</title><script>var x = 1;</script></head>"
            f"<body><nav><a href='/'>Home</a> <a href='/wiki'>Wiki</a></nav><article><h1>{html.escape(title)}</h1>"
            f"{body}</article><footer>Text is available under CC BY-SA.</footer></body></html>"
        )
        (folder / f"{stem}.html").write_text(page, encoding="utf-8")
    elif kind == "docx":
        import docx

        document = docx.Document()
        document.core_properties.title = title
        document.add_paragraph(title, style="Title")
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
        document.save(str(folder / f"{stem}.docx"))
    elif kind == "pdf":
        from fpdf import FPDF

        class Page(FPDF):
            def header(self) -> None:
                self.set_font("dejavu", size=8)
                self.cell(0, 6, f"{title} — SQuAD articles", new_x="LMARGIN", new_y="NEXT")

            def footer(self) -> None:
                self.set_y(-12)
                self.set_font("dejavu", size=8)
                self.cell(0, 6, f"Page {self.page_no()}", align="C")

        pdf = Page()
        pdf.add_font("dejavu", fname=str(FONT))
        pdf.set_title(title)
        pdf.add_page()
        pdf.set_font("dejavu", size=10)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 5, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
        pdf.output(str(folder / f"{stem}.pdf"))


def _squash(text: str) -> str:
    return re.sub(r"[\s\-\u00ad\x02\ufffe]+", "", text)


def page_check(index: Path, folder: Path) -> tuple[int, int]:
    """(passages checked, passages whose `page` is not the page their first words stand on)."""
    import pypdfium2 as pdfium

    store = Store.open(index)
    try:
        records = list(store.records.records(vectors=False))
    finally:
        store.close()
    checked = wrong = 0
    for record in records:
        document = record.document
        assert document.layout is not None
        pdf = pdfium.PdfDocument(folder / Path(document.source).name)
        pages = [_squash(pdf[i].get_textpage().get_text_bounded()) for i in range(len(pdf))]
        pdf.close()
        for passage in record.passages:
            page_range = document.layout.page_range(passage.start, passage.end)
            assert page_range is not None
            # Its first words, up to where the next page starts (a passage may start just before a page break).
            starts = document.layout.pages
            cut = starts[page_range[0]] if page_range[0] < len(starts) else passage.end
            head = _squash(document.text[passage.start : min(passage.end, cut)])[:40]
            checked += 1
            if head not in pages[page_range[0] - 1]:
                wrong += 1
    return checked, wrong


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.formats", description=__doc__)
    parser.add_argument("--articles", type=int, default=12, help="SQuAD dev articles to render (default 12)")
    parser.add_argument("--questions", type=int, default=600, help="questions asked, sampled with a fixed seed")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "formats")
    parser.add_argument("--report", type=Path, default=ROOT / "bench" / "FORMATS.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not SQUAD.is_file():
        print(f"{SQUAD} is missing: the bench needs SQuAD dev v1.1 in ../shared/eval", file=sys.stderr)
        return 2
    shutil.rmtree(args.work, ignore_errors=True)
    chosen = articles(args.articles)
    questions = [(stem, q) for stem, _, _, qs in chosen for q in qs]
    random.Random(7).shuffle(questions)
    questions = questions[: args.questions]
    asked = [Query(qid, text, {stem: 1.0}, answer, answers=(answer,)) for stem, (qid, text, answer) in questions]
    dataset = Dataset("squad-articles-rendered", "qa", asked)
    embedder = Embedder()
    results: dict[str, Any] = {}
    for kind in FORMATS:
        folder = args.work / kind / "docs"
        for stem, title, paragraphs, _ in chosen:
            render(folder, kind, stem, title, paragraphs)
        started = time.perf_counter()
        documents = load_documents([folder])
        index = args.work / kind / "index"
        sync_index(documents, index, embedder, chunker_config(Settings(), embedder), show_progress=False)
        seconds = time.perf_counter() - started
        engine = Engine.load(Settings(index=index), embedder=embedder)
        retriever = engine.retriever(RetrievalConfig(), embedder.encode_query)
        metrics = evaluate(retriever, dataset, MODES, encode_queries=embedder.encode_queries)
        row: dict[str, Any] = {
            "metrics": metrics,
            "passages": engine.view.live_passages,
            "index_seconds": round(seconds, 1),
            "bytes": sum(f.stat().st_size for f in folder.iterdir()),
        }
        engine.close()
        if kind == "pdf":
            row["page_check"] = page_check(index, folder)
        results[kind] = row
        logger.info("%s: %s", kind, {m: round(v["ndcg@10"], 4) for m, v in metrics.items()})
    write_report(results, args, len(dataset.queries))
    return 0


def write_report(results: dict[str, Any], args: argparse.Namespace, queries: int) -> None:
    base = results["txt"]["metrics"]
    lines = [
        "# Retrieval through PDF, HTML and DOCX",
        "",
        f"`python -m bench.formats --articles {args.articles} --questions {args.questions}` (`make bench-formats`): "
        f"the first {args.articles} SQuAD dev articles rendered as text, PDF, HTML and DOCX, each indexed "
        f"through the normal path and asked the same {queries} questions (judged by document and answer "
        "string). Δ is against the text rendering.",
        "",
        "| format | files (bytes) | passages | index s (extraction included) | hybrid nDCG@10 | Δ | dense | Δ | "
        "BM25 | Δ | highlight@1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, row in results.items():
        m = row["metrics"]
        cells = []
        for mode in ("hybrid", "dense", "bm25"):
            value = m[mode]["ndcg@10"]
            cells += [f"{value:.4f}", f"{value - base[mode]['ndcg@10']:+.4f}"]
        lines.append(
            f"| {kind} | {row['bytes']:,} | {row['passages']:,} | {row['index_seconds']} | {' | '.join(cells)} | "
            f"{m['hybrid'].get('highlight@1', float('nan')):.4f} |"
        )
    checked, wrong = results["pdf"]["page_check"]
    lines += [
        "",
        f"PDF pages: {checked:,} passages checked, {wrong} whose `page` is not the page on which their first "
        "words stand (each page's raw text from PDFium, whitespace and hyphens ignored).",
        "",
    ]
    args.report.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
