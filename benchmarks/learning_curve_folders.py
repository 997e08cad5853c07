"""The learning curve's training folders: one pairs folder per row, written with ``projector.formats.pairs``'
writers and checked against the test half.

    plans, folders = plan_rows("nq-wiki", data, split, cfg, llm)
    # plans: [(label, source, count, folder | None, content key, why missing)]; folders: what each LLM folder is

  real      N real queries of train-half passages (one seeded order, ``real_order``: the first
            ``cfg.val_queries`` validate, row N trains on the next N);
  llm       the first N train pairs of a ``projector generate`` folder made from the train-half corpus
            (``llm_rows`` refuses or trims one with test-half passages, drops test-half query texts);
  real+llm  the real row N's queries plus every LLM train pair (``--llm-plus-real``).
A folder's content key (``_rows_hash``) lets a rerun train only what changed. ``cfg`` is
``learning_curve.CurveConfig``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from siblings import load  # benchmarks/ is on sys.path: learning_curve.py put it there

from projector.errors import DataError
from projector.evaluate.data import RetrievalData
from projector.files import write_json
from projector.formats import pairs as P
from projector.formats.corpus import Passage, fingerprint

load("learning_curve_split")  # as benchmarks_learning_curve_split
load("results")  # as benchmarks_results
from benchmarks_learning_curve_split import HalfSplit  # noqa: E402
from benchmarks_results import recorded  # noqa: E402


def _rows_hash(passages: list[Passage], rows: list[dict]) -> str:
    """Content key of a training folder: its passages and its (query, passage, split[, judged negatives]) rows."""
    body = json.dumps([fingerprint(passages), [(r["query"], r["passage_id"], r["split"], *(
        [r["negatives"]] if "negatives" in r else [])) for r in rows]])
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _write_folder(out: Path, passages: list[Passage], rows: list[dict], manifest: dict) -> str:
    """A pairs folder through projector.formats.pairs' own writers; returns its content key."""
    out.mkdir(parents=True, exist_ok=True)
    P.write_passages(passages, out / P.PASSAGES)
    P.write_dataset(rows, out, "qa")
    splits = {s: sum(r["split"] == s for r in rows) for s in P.SPLITS}
    write_json(out / P.MANIFEST, {"format": P.FORMAT, "format_version": P.FORMAT_VERSION, "task": "qa",
                                  "corpus_fingerprint": fingerprint(passages), **manifest,
                                  "counts": {**manifest.get("counts", {}), "splits": splits}})
    return _rows_hash(passages, rows)


def train_half_passages(data: RetrievalData, split: HalfSplit) -> list[Passage]:
    """The train-half passages as a pairs folder's corpus (ids are the set's _id; texts as evaluate embeds them)."""
    return [Passage(passage_id=data.corpus_ids[r], doc_id=data.corpus_ids[r], text=data.corpus[r])
            for r in split.train_passages]


def real_order(split: HalfSplit, val_queries: int, seed: int) -> tuple[list[int], list[int]]:
    """(validation query rows, training pool in sample order): one seeded permutation of the train-half
    queries; the first ``val_queries`` validate every real row, row N trains on ``pool[:N]`` (nested samples)."""
    order = [split.train_queries[i] for i in np.random.default_rng(seed).permutation(len(split.train_queries))]
    return order[:val_queries], order[val_queries:]


def write_real_pairs(out: Path, data: RetrievalData, passages: list[Passage], train_rows: list[int],
                     val_rows: list[int], extra: list[dict] = (), manifest: dict | None = None) -> str:
    """A pairs folder of real queries: train = ``train_rows`` (query rows of data) and the ``extra`` train rows,
    validation = ``val_rows``."""
    rows = (real_query_rows(data, passages, train_rows, "train") + list(extra)
            + real_query_rows(data, passages, val_rows, "validation"))
    return _write_folder(out, passages, rows, {"corpus": f"{data.name} train half",
                                               "source": "real queries of train-half passages (learning_curve.py)",
                                               **(manifest or {})})


def real_query_rows(data: RetrievalData, passages: list[Passage], query_rows: list[int], split: str,
                    by_doc: bool = False) -> list[dict]:
    """qa rows of real queries (rows of ``data``) onto ``passages``, one per relevant passage. ``by_doc``: the
    passages are a generate folder's (ids DOC#i; the set's passage is the first of its document), and a query
    whose passage is not there is left out."""
    index = {}
    for p in passages:
        index.setdefault(p.doc_id if by_doc else p.passage_id, p)
    rows = []
    for i in query_rows:
        rel = [index.get(data.corpus_ids[r]) for r in sorted(data.qrels[i])]
        if by_doc and not all(rel):
            continue
        for p in rel:
            rows += P.qa_rows(p, [data.queries[i]], split)
    return rows


def llm_rows(src: Path, train_ids: set[str], test_texts: set[str],
             train_half_only: bool = False) -> tuple[dict, list[Passage], dict]:
    """An LLM pairs folder's manifest, passages and rows {train, validation}, checked against the split: its
    passages must all be train-half (refused otherwise; with ``train_half_only``, a folder made from the whole
    corpus keeps only its train-half passages and their rows); rows whose query is a test-half query's text are
    dropped."""
    P.load_pairs(src)  # every check of the format
    manifest = P.read_manifest(src)
    passages = P.read_passages(src / P.PASSAGES)
    if train_half_only:
        passages = [p for p in passages if p.doc_id in train_ids]
    outside = sorted({p.doc_id for p in passages} - train_ids)
    if outside:
        raise DataError(f"{src}: {len(outside)} passages are not train-half passages of this set (e.g. "
                        f"{outside[:3]}); generate from the file `learning_curve.py corpus SET OUT.jsonl` writes")
    rows, dropped = {}, 0
    for split in ("train", "validation"):
        kept = [{**r, "split": split} for r in P.load_split(src, split)
                if not train_half_only or r["doc_id"] in train_ids]
        rows[split] = [r for r in kept if r["query"] not in test_texts]
        dropped += len(kept) - len(rows[split])
    return manifest, passages, {"rows": rows, "dropped_test_texts": dropped}


def _check_clean(folder: Path, test_texts: set[str], train_ids: set[str]) -> None:
    """The folder as train reads it: no test-half query, no passage outside the train half."""
    pairs = P.load_pairs(folder)
    leaked = {q for s in ("train", "validation") for q in pairs.splits[s]["query"]} & test_texts
    outside = {x.doc_id for x in P.read_passages(folder / P.PASSAGES)} - train_ids  # LLM folders: ids DOC#0
    if leaked or outside:
        raise RuntimeError(f"{folder}: {len(leaked)} test-half queries, {len(outside)} test-half passages")


def plan_rows(key: str, data, split: HalfSplit, cfg, llm: list[tuple[str, Path]]) -> tuple[list, dict]:
    """Write every training folder; returns ([(label, source, count, folder | None, content key, missing)],
    {label: what the LLM folder is})."""
    work = Path(cfg.work) / key / "pairs"
    passages = train_half_passages(data, split)
    train_ids, test_texts = {p.passage_id for p in passages}, {data.queries[i] for i in split.test_queries}
    plans, folders = [], {}
    if cfg.real:
        plans += real_plans(work, "real", "real", [], data, split, passages, cfg, {})
    val_rows = real_order(split, cfg.val_queries, cfg.seed)[0]
    for label, src in [*llm, *((f"{lb}+realval", src) for lb, src in llm if cfg.llm_real_validation)]:
        manifest, lpass, got = llm_rows(src, train_ids, test_texts, cfg.llm_train_half_only)
        tr, va = got["rows"]["train"], got["rows"]["validation"]
        if label.endswith("+realval"):  # the training signal alone: validated like the real rows, on real queries
            va = real_query_rows(data, lpass, val_rows, "validation", by_doc=True)
        folders[label] = {"path": recorded(src), "train_pairs": len(tr), "validation_pairs": len(va),
                          "dropped_test_texts": got["dropped_test_texts"], "train_half_only": cfg.llm_train_half_only,
                          **{k: manifest.get(k) for k in ("model", "prompt_version", "settings", "counts")},
                          **({"roundtrip_filter": manifest["roundtrip_filter"]} if "roundtrip_filter" in manifest
                             else {})}  # benchmarks/roundtrip_filter.py
        if "teacher" in manifest:  # a projector teach folder: the questions' recipe is its source's
            folders[label].update({k: manifest["source"].get(k) for k in ("prompt_version", "settings")},
                                  teacher_prompt=manifest["prompt_version"], teacher=manifest["teacher"],
                                  cost=manifest["cost"])
        for n in cfg.counts:
            if n > len(tr):
                plans.append((label, "llm", n, None, None, f"the folder has {len(tr)} train pairs"))
                continue
            folder = work / f"{label.replace(':', '-')}-{n}"
            meta = {**{k: v for k, v in manifest.items() if k not in ("counts", "format", "format_version")},
                    "learning_curve": {"source": recorded(src), "first_train_rows": n}}
            plans.append((label, "llm", n, folder, _write_folder(folder, lpass, tr[:n] + va, meta), None))
            _check_clean(folder, test_texts, train_ids)
        if cfg.llm_plus_real and cfg.real and not label.endswith("+realval"):
            # Row group real+LABEL: the real row N's queries plus every LLM train pair, validated like the real
            # rows. The LLM rows move onto the train-half passages by their document (the folders are made with
            # one passage a document), so that both kinds of query point at the same passage texts.
            by_id = {p.passage_id: p for p in passages}
            extra = [row for r in tr for row in P.qa_rows(by_id[r["doc_id"]], [r["query"]], "train")]
            plans += real_plans(work, f"real+{label}", "real+llm", extra, data, split, passages, cfg,
                                {"source": f"real queries of train-half passages plus the {len(extra)} LLM train "
                                           f"pairs of {recorded(src)}"})
    return plans, folders


def real_plans(work: Path, label: str, source: str, extra: list[dict], data, split: HalfSplit,
               passages: list[Passage], cfg, manifest: dict) -> list:
    """The plans of a row group trained on the real row N's queries (plus ``extra`` train rows) at each count,
    validated on the real validation queries; each folder checked against the test half."""
    val, pool = real_order(split, cfg.val_queries, cfg.seed)
    test_texts = {data.queries[i] for i in split.test_queries}
    plans = []
    for n in cfg.counts:
        if n > len(pool):
            plans.append((label, source, n, None, None, f"{len(pool)} real train-half queries besides the "
                                                        f"{len(val)} that validate"))
            continue
        folder = work / f"{label.replace(':', '-')}-{n}"
        content = write_real_pairs(folder, data, passages, pool[:n], val, extra, manifest)
        _check_clean(folder, test_texts, {p.passage_id for p in passages})
        plans.append((label, source, n, folder, content, None))
    return plans
