"""Stage 3: compare trained projections with cosine and the training-free baselines on held-out data.

    python -m projector.evaluate --model runs/proj --pairs runs/pairs                 # the pairs' test split
    python -m projector.evaluate --model runs/a --model runs/b --pairs runs/pairs --split validation
    python -m projector.evaluate --model runs/proj --beir benchmarks/data/faq-perl-debian --pairs runs/pairs
    python -m projector.evaluate --beir benchmarks/data/faq-perl-debian    # baselines only
    (a real-query set in BEIR layout; python benchmarks/build.py faq-perl-debian writes that one)
    python -m projector.evaluate --labelled items.jsonl --label interface --model runs/interface-model
    (items with labels: each a query over the others, relevant = same label; ``projector.evaluate.labelled`` owns it)

Inputs: trained projection folders (``--model``, repeatable: one row each), and either a pairs dataset
(``--pairs``, from ``projector.generate``) or a BEIR folder (``--beir``: corpus.jsonl, queries.jsonl,
qrels/test.tsv, real human queries), or your users' real queries against the pairs' passages (``--pairs DIR
--queries FILE``: JSON lines of query and passage_id / passage_ids / doc_id, ``projector.formats.realqueries``).
With --pairs and --beir, the BEIR set is evaluated and the pairs' *train* split only fits the closed-form
baseline. ``--corpus`` replaces the pairs' retrieval corpus by a BEIR corpus.jsonl.
Or, instead of both, labelled items (``--labelled FILE --label NAME``: JSONL of id, text, labels, optional split).

Work, every row through the same evaluator, on the same embeddings of the same encoder:
  qa / BEIR   retrieval of each query against the *whole* corpus (trec_eval via pytrec_eval: NDCG@10,
              MRR@10, MAP@100, Recall@1/5/10/100, Accuracy@1) and calibration of ``probability()`` on
              sampled (query, passage) pairs: every positive plus ``hard_negatives`` top-ranked non-relevant
              passages under frozen cosine and ``random_negatives`` uniform ones per query (default 5 + 5,
              so about 1 positive : 10 negatives); log-loss, Brier, ECE (15 equal-width bins).
  pairs       ROC-AUC, average precision, accuracy at the threshold that is best on the validation split,
              and the same calibration metrics over the labelled test pairs.
  labelled    mAP, P@10, chance mAP, pair ROC-AUC / AP and calibration over all item pairs
              (``projector.evaluate.labelled``).
Paired bootstrap (over queries or pairs) 95% CIs of each row's difference to cosine on the headline metrics.

Outputs in ``--out`` (default ``MODEL/eval-SPLIT`` of the first model, or ``runs/eval-NAME``): report.md,
report.json, config.json and PNG plots; the table is also printed.
"""
from __future__ import annotations

import csv
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from projector.evaluate import baselines as B
from projector import cli
from projector.evaluate import labelled as L
from projector.cli import option
from projector.embed.endpoint import EncoderOptions
from projector.embed.given import PassageVectorsOptions, seed_passage_vectors
from projector.formats.corpus import read_jsonl
from projector.errors import ArtifactError, DataError
from projector.metrics import (best_threshold, bootstrap_ci, bootstrap_stat_ci, calibration, pair_stat, reliability,
                               retrieval_metrics, sample_calibration_pairs)
from projector.formats.pairs import PASSAGES, load_split, read_manifest, read_passages
from projector.formats.realqueries import read_real_queries

log = logging.getLogger("projector.evaluate")


@dataclass
class EvalConfig(EncoderOptions, PassageVectorsOptions):  # + --encoder-* (an endpoint), --passage-vectors
    models: list[str] = option(default_factory=list, flag="--model",
                               help="trained projection folder, one row each (repeatable)")
    pairs: str | None = option(None, help="pairs dataset folder (projector.generate output)")
    split: str = option("test", choices=("test", "validation", "train"), help="split of --pairs to evaluate")
    corpus: str | None = option(None, help="BEIR corpus.jsonl to use as the retrieval corpus instead of the pairs' "
                                           "passages.jsonl")
    beir: str | None = option(None, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv) to evaluate "
                                         "instead of the pairs split")
    queries: str | None = option(None, help="your users' real queries: JSON lines of query and passage_id, "
                                            "passage_ids or doc_id of --pairs' passages (projector.formats.realqueries), "
                                            "ranked against the pairs' corpus instead of the pairs split")
    encoder: str | None = option(None, help="encoder when no --model is given; None: the default encoder")
    out: str | None = option(None, help="output folder; None: MODEL/eval-SPLIT of the first model, or "
                                        "runs/eval-NAME")
    hard_negatives: int = option(5, help="calibration: top-cosine non-relevant passages per query")
    random_negatives: int = option(5, help="calibration: uniformly drawn non-relevant passages per query")
    bootstrap: int = option(1000, help="paired bootstrap resamples for the CIs (at least 10)")
    seed: int = option(0, help="seeds the negative sampling and the bootstrap")
    batch_size: int = option(64, help="encoder batch size")
    labelled: str | None = option(None, help="labelled items JSONL (id, text, labels {criterion: value}, optional "
                                             "split) to evaluate instead of --pairs/--beir: each item of --split "
                                             "(all items if the file has no split field) a query over the others, "
                                             "relevant = same --label value")
    label: str | None = option(None, help="with --labelled: the criterion (a key of the rows' labels) to score")
    min_class: int = option(10, help="with --labelled: classes of fewer items give no queries (10: the benchmark "
                                     "protocol)")
    small_classes: str = option("drop", choices=("drop", "distract"),
                                help="with --labelled: classes under --min-class leave the pool (drop, the "
                                     "benchmark protocol) or stay in it as distractors")


def _check_config(cfg: EvalConfig) -> None:
    """Fail before any embedding work, naming the bad value."""
    for name in ("hard_negatives", "random_negatives"):
        if getattr(cfg, name) < 0:
            raise DataError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")
    if cfg.bootstrap < 10:
        raise DataError(f"--bootstrap must be >= 10 resamples, got {cfg.bootstrap}")
    if cfg.labelled:
        other = [f for f, v in (("--pairs", cfg.pairs), ("--beir", cfg.beir), ("--corpus", cfg.corpus)) if v]
        if other:
            raise DataError(f"--labelled is evaluated on its own items; drop {' and '.join(other)} (one evaluation "
                            "per run: labelled items, or retrieval/pairs)")
        if not cfg.label:
            raise DataError("--labelled needs --label NAME: the criterion (a key of the rows' labels) to score")
        if cfg.min_class < 2:
            raise DataError(f"--min-class must be >= 2 (a class of one item has nothing to retrieve), got "
                            f"{cfg.min_class}")
    elif cfg.label:
        raise DataError("--label applies to --labelled items only; give --labelled FILE")
    if cfg.queries and (not cfg.pairs or cfg.beir or cfg.corpus or cfg.labelled):
        raise DataError("--queries are ranked against --pairs' own passages: give --pairs DIR and none of --beir, "
                        "--corpus, --labelled")


RETRIEVAL_HEADLINE = ["ndcg@10", "mrr@10", "recall@10", "accuracy@1"]
PAIR_HEADLINE = ["roc_auc", "average_precision", "accuracy"]


def has_probability(scorer) -> bool:
    return callable(getattr(scorer, "probability", None))


# ----------------------------------------------------------------------------------------- evaluators
@dataclass
class RetrievalEvaluator:
    """Rank the whole corpus for each query; trec_eval metrics per query (``per_query``) or averaged."""

    query_emb: np.ndarray            # (nq, d)
    corpus_emb: np.ndarray           # (nd, d)
    qrels: list[set[int]]            # per query: row indices of its relevant passages
    top_k: int = 100
    chunk: int = 256                 # queries scored at once: (chunk, nd) floats in memory
    primary_metric: str = "ndcg@10"

    def rank(self, scorer) -> np.ndarray:
        """(nq, top_k) corpus row indices, best first."""
        k = min(self.top_k, len(self.corpus_emb))
        out = np.empty((len(self.query_emb), k), dtype=np.int64)
        for i in range(0, len(self.query_emb), self.chunk):
            s = np.asarray(scorer.score(self.query_emb[i:i + self.chunk], self.corpus_emb))  # (c, nd)
            top = np.argpartition(-s, k - 1, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
            out[i:i + len(s)] = np.take_along_axis(top, order, axis=1)
        return out

    def per_query(self, scorer) -> dict[str, np.ndarray]:
        """trec_eval's measures per query (``metrics.retrieval_metrics``) of the scorer's ranking."""
        return retrieval_metrics(self.rank(scorer), self.qrels)

    def __call__(self, scorer) -> dict[str, float]:
        return {k: float(v.mean()) for k, v in self.per_query(scorer).items()}

    def with_embeddings(self, query_emb, corpus_emb) -> "RetrievalEvaluator":
        return dataclasses.replace(self, query_emb=query_emb, corpus_emb=corpus_emb)


@dataclass
class PairEvaluator:
    """Score aligned pairs (a_i, b_i) with labels: ROC-AUC, AP, thresholded accuracy, calibration.

    ``val`` (a, b, labels) picks the accuracy threshold; without it no accuracy is reported. Calibration
    metrics appear only for scorers with ``probability()``: cosine has none, and none is invented.
    """

    a_emb: np.ndarray                # (n, d)
    b_emb: np.ndarray                # (n, d)
    labels: np.ndarray               # (n,) 0/1
    val: tuple | None = None         # (a_emb, b_emb, labels) of the validation split
    bins: int = 15
    chunk: int = 256
    primary_metric: str = "roc_auc"

    def scores(self, scorer, a=None, b=None, fn: str = "score") -> np.ndarray:
        a, b = (self.a_emb, self.b_emb) if a is None else (a, b)
        f = getattr(scorer, fn)
        out = np.empty(len(a), dtype=np.float64)
        for i in range(0, len(a), self.chunk):   # diagonal of (c, c) blocks: pairwise scores of aligned rows
            out[i:i + self.chunk] = np.diagonal(np.asarray(f(a[i:i + self.chunk], b[i:i + self.chunk])))
        return out

    def __call__(self, scorer) -> dict[str, float]:
        from sklearn.metrics import average_precision_score, roc_auc_score

        y = np.asarray(self.labels)
        s = self.scores(scorer)
        out = {"roc_auc": float(roc_auc_score(y, s)), "average_precision": float(average_precision_score(y, s))}
        if self.val is not None:
            t = best_threshold(self.scores(scorer, self.val[0], self.val[1]), np.asarray(self.val[2]))
            out |= {"accuracy": float(((s >= t) == y).mean()), "threshold": float(t)}
        if has_probability(scorer):
            out |= calibration(self.scores(scorer, fn="probability"), y, self.bins)
        return out


# ------------------------------------------------------------------------------------------- data
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


# ------------------------------------------------------------------------------------------- rows
@dataclass
class Row:
    name: str
    scorer: object
    kind: str                         # "baseline" | "model"
    templates: tuple = (None, None)   # (query template, document template) the scorer's embeddings need
    log_path: str | None = None       # the model's train_log.jsonl, for the training curves
    info: dict | None = None          # a model's projector.json facts shown in the report


def load_models(paths: list[str], encoder: str | None) -> tuple[list[Row], str | None]:
    """Load each projection folder; return the rows and the encoder to embed with (all must share it).

    The encoder is ``encoder`` (``--encoder``) when given, else what the first model was trained with
    (projector.json ``encoder_source``); its identity must match every model's recorded ``encoder``.
    """
    import projector
    from projector.embed.encoder import encoder_identity

    rows, names, meta = [], set(), []
    for p in paths:
        if not (Path(p) / "projector.json").is_file():
            raise ArtifactError(f"--model {p}: no projector.json; give a folder written by projector.train")
        proj = projector.load(p)  # checks projector.json and the weights before anything reads them
        meta.append(proj.meta)
        t = getattr(proj, "templates", None) or meta[-1].get("templates") or {}
        name = Path(p).resolve().name
        while name in names:
            name += "'"
        names.add(name)
        log_file = Path(p) / "train_log.jsonl"
        m = meta[-1]
        info = {"path": str(p), "mode": m.get("mode"), "rank": m.get("rank"), "selected": m.get("selected"),
                "warning": m.get("warning"), "trained_on": (m.get("pairs") or {}).get("path")}
        rows.append(Row(name, proj, "model", (t.get("query"), t.get("document")),
                        str(log_file) if log_file.is_file() else None, info))
    if not rows:
        return rows, encoder
    if encoder is None:
        encoder = meta[0].get("encoder_source")
    ident = encoder_identity(encoder)
    for p, m in zip(paths, meta):
        if m.get("encoder") and m["encoder"] != ident:
            raise ArtifactError(f"--model {p} was trained on encoder {m['encoder']!r}, but evaluation embeds with "
                                f"{ident!r}; pass --encoder with that model's encoder, or evaluate models of "
                                "one encoder together")
    return rows, encoder


class Embedder:
    """Embeds (and caches in memory, by template) the texts of one evaluation with one encoder."""

    def __init__(self, encoder: str | None, batch_size: int):
        self.encoder, self.batch_size, self._memo = encoder, batch_size, {}

    def __call__(self, texts: list[str], template: str | None) -> np.ndarray:
        from projector.embed.embedding import embed

        key = (hash(tuple(texts)), len(texts), template)
        if key not in self._memo:
            self._memo[key] = embed(texts, self.encoder, template=template, batch_size=self.batch_size)
        return self._memo[key]


def _probability_fields(res: dict, hist: dict, scorer, ev, y: np.ndarray) -> None:
    """A row's reliability diagram and probabilities, or the note that a cosine/baseline score has none."""
    if has_probability(scorer):
        p = ev.scores(scorer, fn="probability")
        res["reliability"] = reliability(np.clip(p, 0, 1), y)
        hist["probability"] = p
    else:
        res["calibration_note"] = "no probability: a cosine/baseline score is not a probability"


def evaluate_retrieval(cfg: EvalConfig, data: RetrievalData, rows: list[Row], emb: Embedder) -> dict:
    q0, d0 = emb(data.queries, None), emb(data.corpus, None)
    ev = RetrievalEvaluator(q0, d0, data.qrels)
    cos_top = ev.rank(B.Cosine().fit(d0))
    qi, di, y = sample_calibration_pairs(cos_top, data.qrels, len(data.corpus), cfg.hard_negatives,
                                         cfg.random_negatives, cfg.seed)
    results, per_query, hist = [], {}, {}
    for r in rows:
        q, d = emb(data.queries, r.templates[0]), emb(data.corpus, r.templates[1])
        pq = ev.with_embeddings(q, d).per_query(r.scorer)
        pe = PairEvaluator(q[qi], d[di], y)
        cal = pe(r.scorer)
        per_query[r.name] = pq
        hist[r.name] = {"scores": pe.scores(r.scorer), "labels": y}
        res = {"name": r.name, "kind": r.kind, **({"model": r.info} if r.info else {}), "metrics": {k: float(v.mean()) for k, v in pq.items()},
               "ci95": {m: bootstrap_ci(pq[m], cfg.bootstrap, cfg.seed) for m in RETRIEVAL_HEADLINE},
               "calibration": {k: v for k, v in cal.items() if k not in ("roc_auc", "average_precision")},
               "pair_auc": cal["roc_auc"]}
        _probability_fields(res, hist[r.name], r.scorer, pe, y)
        results.append(res)
    for res in results:
        diffs = {m: per_query[res["name"]][m] - per_query["cosine"][m] for m in RETRIEVAL_HEADLINE}
        res["delta_vs_cosine"] = {m: {"delta": float(v.mean()), "ci95": bootstrap_ci(v, cfg.bootstrap, cfg.seed)}
                                  for m, v in diffs.items()}
    data_info = {"name": data.name, "queries": len(data.queries), "corpus": len(data.corpus),
                 "calibration_pairs": int(len(y)), "calibration_positives": int(y.sum()),
                 "calibration_sampling": f"per query: all positives + {cfg.hard_negatives} top-cosine "
                                         f"non-relevant + {cfg.random_negatives} uniform non-relevant passages "
                                         f"(seed {cfg.seed}); positives:negatives = 1:{(len(y) - y.sum()) / max(y.sum(), 1):.1f}"}
    return {"task": "retrieval", "data": data_info, "primary_metric": "ndcg@10", "headline": RETRIEVAL_HEADLINE,
            "rows": results, "_hist": hist}


def evaluate_pairs(cfg: EvalConfig, pairs: str, split: str, rows: list[Row], emb: Embedder) -> dict:
    test, val = load_split(pairs, split), load_split(pairs, "validation")
    ya, yv = np.array(test["label"]), np.array(val["label"])
    for name, yy in [(split, ya), ("validation", yv)]:
        if yy.min() == yy.max():
            raise DataError(f"the {name} split of {pairs} has only label {yy[0]}; ROC-AUC needs both classes")
    texts = {k: list(test[k]) for k in ("text_a", "text_b")} | {"v" + k: list(val[k]) for k in ("text_a", "text_b")}
    results, scores, hist = [], {}, {}
    for r in rows:
        ta, tb = r.templates   # as train embeds them: text_a with the query template, text_b the document one
        ev = PairEvaluator(emb(texts["text_a"], ta), emb(texts["text_b"], tb), ya,
                           val=(emb(texts["vtext_a"], ta), emb(texts["vtext_b"], tb), yv))
        m = ev(r.scorer)
        scores[r.name] = (ev.scores(r.scorer), m["threshold"])
        hist[r.name] = {"scores": scores[r.name][0], "labels": ya}
        res = {"name": r.name, "kind": r.kind, **({"model": r.info} if r.info else {}), "metrics": {k: m[k] for k in PAIR_HEADLINE + ["threshold"]},
               "calibration": {k: v for k, v in m.items() if k not in PAIR_HEADLINE + ["threshold"]}}
        _probability_fields(res, hist[r.name], r.scorer, ev, ya)
        results.append(res)
    n = len(ya)
    for res in results:
        s, t = scores[res["name"]]
        s0, t0 = scores["cosine"]
        res["ci95"], res["delta_vs_cosine"] = {}, {}
        for m in PAIR_HEADLINE:
            res["ci95"][m] = bootstrap_stat_ci(lambda i: pair_stat(m, s, ya, i, t), n, cfg.bootstrap, cfg.seed)
            diff = bootstrap_stat_ci(lambda i: pair_stat(m, s, ya, i, t) - pair_stat(m, s0, ya, i, t0),
                                     n, cfg.bootstrap, cfg.seed)
            res["delta_vs_cosine"][m] = {"delta": res["metrics"][m] - next(
                x["metrics"][m] for x in results if x["name"] == "cosine"), "ci95": diff}
    data_info = {"name": f"{Path(pairs).name}-{split}", "pairs": n, "positives": int(ya.sum()),
                 "validation_pairs": len(yv), "calibration_sampling": "the labelled pairs themselves"}
    return {"task": "pairs", "data": data_info, "primary_metric": "roc_auc", "headline": PAIR_HEADLINE,
            "rows": results, "_hist": hist}


def baseline_rows(cfg: EvalConfig, dim: int, corpus_emb: np.ndarray, emb: Embedder,
                  pairs_task: str | None) -> list[Row]:
    """The baselines fitted on the (untemplated) corpus embeddings; the closed form on the pairs' train split."""
    train_q = train_p = None
    if cfg.pairs and pairs_task == "qa":
        tr = load_split(cfg.pairs, "train")
        train_q, train_p = emb(list(tr["query"]), None), emb(list(tr["passage"]), None)
    elif cfg.pairs and pairs_task == "pairs":
        tr = load_split(cfg.pairs, "train")   # columns as lists: .filter() would write cache files into --pairs
        pos = [(a, b) for a, b, y in zip(tr["text_a"], tr["text_b"], tr["label"]) if y == 1]
        if pos:   # symmetric_closed_form fits both directions itself
            train_q, train_p = emb([a for a, _ in pos], None), emb([b for _, b in pos], None)
    rows = []
    for b in B.default_baselines(dim, closed_form=pairs_task if train_q is not None else None):
        rows.append(Row(b.name, b.fit(corpus_emb, train_q, train_p), "baseline"))
    return rows


def run(cfg: EvalConfig) -> dict:
    """Evaluate every baseline and model; write the report; return report.json's content."""
    _check_config(cfg)
    if not cfg.pairs and not cfg.beir and not cfg.labelled:
        raise DataError("give --pairs DIR (a projector.generate output), --beir DIR (a BEIR folder) or "
                        "--labelled FILE --label NAME (labelled items)")
    if cfg.labelled:
        return run_labelled(cfg)
    models, encoder = load_models(cfg.models, cfg.encoder)
    if cfg.pairs and not cfg.beir and not cfg.queries and cfg.split == "train":
        log.warning("evaluating on the train split: the models and the closed form were fitted on it, "
                    "so their numbers are optimistic; use --split test")
    emb = Embedder(encoder, cfg.batch_size)
    task = read_manifest(cfg.pairs)["task"] if cfg.pairs else "qa"
    if cfg.beir or task == "qa":
        data = (load_beir(cfg.beir) if cfg.beir else load_real(cfg.pairs, cfg.queries) if cfg.queries
                else load_qa(cfg.pairs, cfg.split, cfg.corpus))
        fit_texts = data.corpus
        if cfg.passage_vectors:  # your own passage vectors, under every template the rows embed passages with
            seed_passage_vectors(cfg.passage_vectors, data.corpus_ids, data.corpus, encoder,
                                 [None] + [r.templates[1] for r in models], columns=cfg.passage_vectors_columns)
    else:
        fit_texts = [p.text for p in read_passages(Path(cfg.pairs) / PASSAGES)]   # the judged texts' corpus
    corpus_emb = emb(fit_texts, None)
    rows = baseline_rows(cfg, corpus_emb.shape[1], corpus_emb, emb, task if cfg.pairs else None) + models
    if cfg.beir or task == "qa":
        result = evaluate_retrieval(cfg, data, rows, emb)
    else:
        result = evaluate_pairs(cfg, cfg.pairs, cfg.split, rows, emb)
    return _write(cfg, result, rows, encoder)


def run_labelled(cfg: EvalConfig) -> dict:
    """``--labelled``: every baseline and model on the items of one split (``projector.evaluate.labelled``)."""
    data = L.read_labelled(cfg.labelled, cfg.label, cfg.split, cfg.min_class)
    models, encoder = load_models(cfg.models, cfg.encoder)
    emb = Embedder(encoder, cfg.batch_size)
    item_emb = emb(data.texts, None)   # the baselines are fitted on the split's items only, no labels
    rows = baseline_rows(cfg, item_emb.shape[1], item_emb, emb, None) + models
    result = L.evaluate_labelled(data, rows, emb, min_class=cfg.min_class, small_classes=cfg.small_classes,
                                 bootstrap=cfg.bootstrap, seed=cfg.seed)
    return _write(cfg, result, rows, encoder)


def _write(cfg: EvalConfig, result: dict, rows: list[Row], encoder: str | None) -> dict:
    """Add the encoder, config and training logs to ``result``; write the report; return report.json's content."""
    from projector.evaluate import report
    from projector.embed.encoder import encoder_identity

    result["encoder"] = encoder_identity(encoder)
    result["config"] = dataclasses.asdict(cfg)
    result["training_logs"] = {r.name: r.log_path for r in rows if r.log_path}
    out = Path(cfg.out) if cfg.out else default_out(cfg, result["data"]["name"])
    report.write(result, out)
    return result


def default_out(cfg: EvalConfig, name: str) -> Path:
    return Path(cfg.models[0]) / f"eval-{name}" if cfg.models else Path("runs") / f"eval-{name}"


PROG = "python -m projector.evaluate"


def parse_args(argv=None, prog: str = PROG) -> EvalConfig:
    """EvalConfig from command-line flags, one per field (``projector.cli.parse``)."""
    return cli.parse(EvalConfig, argv, prog=prog, doc=__doc__)


def main(argv=None, prog: str = PROG) -> int:
    """Run the stage from the command line; the exit code: 0 done, 2 a user error (one line), 130 interrupted."""
    return cli.run(lambda a: run(parse_args(a, prog)), "evaluate", argv)

