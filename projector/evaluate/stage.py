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

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from projector import cli
from projector.cli import option
from projector.errors import DataError
from projector.evaluate import baselines as B
from projector.evaluate import labelled as L
# beside the stage: what is ranked (data), what is compared (rows), how one row is scored (evaluators)
from projector.evaluate.data import RetrievalData, load_beir, load_qa, load_real
from projector.evaluate.evaluators import (PAIR_HEADLINE, RETRIEVAL_HEADLINE, PairEvaluator, RetrievalEvaluator,
                                           has_probability)
from projector.evaluate.rows import Embedder, Row, load_models
from projector.embed.endpoint import EncoderOptions
from projector.embed.given import PassageVectorsOptions, seed_passage_vectors
from projector.formats.pairs import PASSAGES, load_split, read_manifest, read_passages
from projector.metrics import bootstrap_ci, bootstrap_stat_ci, pair_stat, reliability, sample_calibration_pairs

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

