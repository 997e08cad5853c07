"""The retrieval data an evaluation ranks: queries, a corpus, and which passages answer each query.

    data = load_beir("benchmarks/data/faq-perl-debian")     # a BEIR folder of real queries
    data = load_qa("runs/pairs", "test", None)              # a pairs folder's questions, whole corpus
    data = load_real("runs/pairs", "queries.jsonl")         # your users' queries against the pairs' passages

Each returns a ``RetrievalData``: unique query texts, the corpus as embedded, and per query the row indices
of its relevant passages. Labelled items have their own reader, ``projector.evaluate.labelled``.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from projector.errors import DataError
from projector.formats.corpus import read_jsonl
from projector.formats.pairs import PASSAGES, load_split, read_manifest, read_passages
from projector.formats.realqueries import read_real_queries

log = logging.getLogger("projector.evaluate")


def _jsonl_rows(path: Path) -> list[dict]:
    return [row for _, row in read_jsonl(path, error=DataError)]


def doc_text(title: str, text: str) -> str:
    return f"{title}\n{text}" if title else text


@dataclass
class RetrievalData:
    name: str
    queries: list[str]               # unique query texts
    corpus_ids: list[str]
    corpus: list[str]                # passage texts, as embedded
    qrels: list[set[int]]            # per query: row indices into corpus


def read_beir_corpus(path: Path) -> tuple[list[str], list[str]]:
    rows = _jsonl_rows(path)
    if rows and "_id" not in rows[0]:
        raise DataError(f"{path}: BEIR corpus rows need '_id', 'title', 'text'; got fields {sorted(rows[0])}")
    return [str(r["_id"]) for r in rows], [doc_text(r.get("title", ""), r["text"]) for r in rows]


def load_beir(folder: str) -> RetrievalData:
    d = Path(folder)
    ids, texts = read_beir_corpus(d / "corpus.jsonl")
    queries = {str(r["_id"]): r["text"] for r in _jsonl_rows(d / "queries.jsonl")}
    row = {cid: i for i, cid in enumerate(ids)}
    rel: dict[str, set[int]] = {}
    qrels_path = d / "qrels" / "test.tsv"
    if not qrels_path.is_file():
        raise DataError(f"{qrels_path} not found; a BEIR folder needs qrels/test.tsv (query-id, corpus-id, score)")
    with open(qrels_path, encoding="utf-8") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            if int(r["score"]) > 0 and r["corpus-id"] in row and r["query-id"] in queries:
                rel.setdefault(r["query-id"], set()).add(row[r["corpus-id"]])
    if not rel:
        raise DataError(f"{qrels_path}: no judged query matches queries.jsonl and corpus.jsonl ids")
    qids = [q for q in queries if q in rel]
    return RetrievalData(d.name, [queries[q] for q in qids], ids, texts, [rel[q] for q in qids])


def load_qa(pairs: str, split: str, corpus: str | None) -> RetrievalData:
    if corpus:
        ids, texts = read_beir_corpus(Path(corpus))
    else:
        passages = read_passages(Path(pairs) / PASSAGES)
        ids, texts = [p.passage_id for p in passages], [p.text for p in passages]   # as train embeds them
    row = {pid: i for i, pid in enumerate(ids)}
    ds = load_split(pairs, split)
    rel: dict[str, set[int]] = {}
    missing = 0
    for q, pid in zip(ds["query"], ds["passage_id"]):
        if str(pid) not in row:
            missing += 1
            continue
        rel.setdefault(q, set()).add(row[str(pid)])
    if missing:
        log.warning("%d %s rows point to passages not in the corpus; they are skipped", missing, split)
    if not rel:
        raise DataError(f"no {split} query of {pairs} has its passage in the corpus; "
                        "--corpus must contain the pairs' passage_id values as '_id'")
    return RetrievalData(f"{Path(pairs).name}-{split}", list(rel), ids, texts, list(rel.values()))


def load_real(pairs: str, queries: str) -> RetrievalData:
    """``--queries``: the user's real queries (``projector.formats.realqueries``) against the pairs folder's passages."""
    passages = read_passages(Path(pairs) / PASSAGES)
    if read_manifest(pairs)["task"] != "qa":
        raise DataError(f"--queries rank passages: {pairs} is not a task qa folder")
    real = read_real_queries(queries, passages)
    return RetrievalData(f"{Path(queries).stem}", real.queries, [p.passage_id for p in passages],
                         [p.text for p in passages], real.relevant)
