"""Labelled items (human or any other labels, one JSON object a line) and their evaluation: "similar in which sense?".

    python -m projector.evaluate --labelled items.jsonl --label interface --split test --out runs/eval-interface
    python -m projector.evaluate --labelled items.jsonl --label section --model runs/section-model

This module owns the labelled-items file and its evaluation (``projector.evaluate --labelled`` is its CLI):

  file     JSONL, one item a line: ``id`` (unique), ``text``, ``labels`` (an object: criterion name -> value,
           e.g. ``{"interface": "commandline", "section": "utils"}``), optional ``split``. A missing value,
           null or ``"unknown"`` (``projector.formats.pairs.UNKNOWN``) means: not labelled for that criterion; such
           items are skipped and counted. Without any ``split`` field every item is evaluated; with one, the
           items of ``--split`` (default test).
  metrics  each item of the split a query over the other items; relevant = same label value (``--label``);
           classes of fewer than ``--min-class`` items (default 10, the benchmark protocol) give no queries
           and leave the pool (``--small-classes drop``, the protocol) or stay in it as distractors
           (``distract``). Per row: mAP, P@10 (``metrics.label_queries``), chance mAP (sum of squared class
           shares of the queries), pair ROC-AUC and average precision over every unordered pair of pooled
           items (positive = same label), and, for a model with ``probability()``, log-loss, Brier and ECE on
           those pairs. Paired bootstrap 95% CIs over queries of mAP and P@10 and of each row's difference
           to cosine.
  rows     the evaluator gets them from ``projector.evaluate``: cosine and the training-free baselines
           (fitted on the split's item embeddings only, no labels) and each ``--model``. A model scores
           query side against document side (``score(q, d)``, for a symmetric model cos(W a, W b)); an
           asymmetric model's pair score is the mean of its two directions.

The result is the dict ``projector.evaluate.report`` writes (task ``labelled``), like retrieval's.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from projector.formats.corpus import read_jsonl
from projector.errors import DataError
from projector.evaluate.evaluators import has_probability
from projector.metrics import auc_ap, bootstrap_ci, calibration, label_queries, reliability
from projector.formats.pairs import UNKNOWN

log = logging.getLogger("projector.evaluate.labelled")

HEADLINE = ["map", "p@10"]
HIST_PAIRS = 20000   # pairs kept per row for the score histogram (seeded sample); the metrics use all pairs


@dataclass
class LabelledData:
    name: str                    # report name: FILE-SPLIT-LABEL
    path: str
    label: str                   # the criterion (--label)
    split: str | None            # None: the file has no split field, every item is evaluated
    ids: list[str]               # the split's items, file order
    texts: list[str]
    labels: list[str]            # per item: its value for ``label``, UNKNOWN when it has none
    others: list[str]            # the other criteria of the file (shown in the report)


def _value(v) -> str:
    return UNKNOWN if v is None or (isinstance(v, str) and v.strip().lower() in ("", UNKNOWN)) else str(v).strip()


def read_labelled(path, label: str, split: str | None, min_class: int) -> LabelledData:
    """The items of ``split`` with their ``label`` values; every bad input a DataError naming file, row, field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--labelled {path}: no such file; give a JSONL file of items (id, text, labels)")
    rows = read_jsonl(path, error=DataError)
    if not rows:
        raise DataError(f"--labelled {path}: no items (one JSON object a line: id, text, labels)")
    first: dict[str, str] = {}
    criteria: Counter = Counter()
    for where, r in rows:
        for field in ("id", "text", "labels"):
            if field not in r:
                raise DataError(f"{where}: missing field {field!r}; each row needs id, text, labels "
                                "({criterion: value}), optional split")
        if not isinstance(r["labels"], dict):
            raise DataError(f"{where}: field 'labels' must be an object {{criterion: value}}, "
                            f"got {type(r['labels']).__name__}")
        if not isinstance(r["text"], str) or not r["text"].strip():
            raise DataError(f"{where}: field 'text' must be a non-empty string")
        for k, v in r["labels"].items():
            if isinstance(v, (dict, list)):
                raise DataError(f"{where}: labels.{k} must be one value (a string), got {type(v).__name__}")
        rid = str(r["id"])
        if rid in first:
            raise DataError(f"{where}: id {rid!r} appears twice (first at {first[rid]}); ids must be unique")
        first[rid] = where
        criteria.update(r["labels"])
    if label not in criteria:
        raise DataError(f"--labelled {path}: no row has label {label!r} (--label); labels present: "
                        f"{', '.join(sorted(criteria))}")
    splits = Counter(str(r["split"]) for _, r in rows if r.get("split") is not None)
    if splits:
        chosen = [r for _, r in rows if r.get("split") is not None and str(r["split"]) == split]
        if not chosen:
            raise DataError(f"--labelled {path}: no item has split {split!r} (--split); splits present: "
                            + ", ".join(f"{s} ({n})" for s, n in sorted(splits.items())))
    else:
        log.info("%s has no split field: every item is evaluated (--split %s does not apply)", path, split)
        chosen, split = [r for _, r in rows], None
    values = [_value(r["labels"].get(label)) for r in chosen]
    counts = Counter(v for v in values if v != UNKNOWN)
    big = {v: n for v, n in counts.items() if n >= min_class}
    where = f"--labelled {path}: label {label!r} of " + (f"split {split!r}" if split else "the items")
    if len(big) < 2:
        shown = ", ".join(f"{v}: {n}" for v, n in counts.most_common(8)) or "none labelled"
        raise DataError(f"{where} has {len(big)} class(es) of >= {min_class} items ({shown}); mAP needs two: "
                        "lower --min-class, choose another --label or --split")
    stem = path.stem if path.stem != "items" else path.parent.name
    name = "-".join([stem, split or "all", label])
    return LabelledData(name, str(path), label, split, [str(r["id"]) for r in chosen], [r["text"] for r in chosen],
                        values, sorted(set(criteria) - {label}))


# ------------------------------------------------------------------------------------------------ evaluation
def _pair_scores(s: np.ndarray) -> np.ndarray:
    """(p, p) query-by-document scores -> (p(p-1)/2,) one per unordered pair: the mean of both directions."""
    iu = np.triu_indices(len(s), 1)
    return (s[iu] + s.T[iu]) / 2


def evaluate_labelled(data: LabelledData, rows, emb, *, min_class: int, small_classes: str, bootstrap: int,
                      seed: int) -> dict:
    """Every row through the same evaluator on the split's items; rows: objects with name, kind, scorer,
    templates (query, document), info (``projector.evaluate.rows.Row``); ``emb(texts, template)`` embeds."""
    known = np.array([v != UNKNOWN for v in data.labels])
    texts = [t for t, k in zip(data.texts, known) if k]
    labels = np.array([v for v in data.labels if v != UNKNOWN], dtype=object)
    results, per_query, hist, first = [], {}, {}, None
    rng = np.random.default_rng(seed)
    for r in rows:
        q, d = emb(texts, r.templates[0]), emb(texts, r.templates[1])
        s = np.asarray(r.scorer.score(q, d), dtype=np.float64)                      # (n, n)
        lq = label_queries(s, labels, min_class, small_classes=small_classes)
        if first is None:
            first = lq
            y = (labels[lq["pool"]][:, None] == labels[lq["pool"]][None, :])
            y = y[np.triu_indices(len(lq["pool"]), 1)].astype(np.int64)             # (pairs,) same label
            shown = rng.choice(len(y), min(HIST_PAIRS, len(y)), replace=False)
        pool = lq["pool"]
        ps = _pair_scores(s[np.ix_(pool, pool)])
        auc, ap = auc_ap(ps, y)
        per_query[r.name] = {"map": lq["ap"], "p@10": lq["p_at_10"]}
        hist[r.name] = {"scores": ps[shown], "labels": y[shown]}
        res = {"name": r.name, "kind": r.kind, **({"model": r.info} if r.info else {}),
               "metrics": {"map": float(lq["ap"].mean()), "p@10": float(lq["p_at_10"].mean()),
                           "chance_map": lq["chance_map"], "roc_auc": auc, "average_precision": ap},
               "ci95": {m: bootstrap_ci(per_query[r.name][m], bootstrap, seed) for m in HEADLINE},
               "calibration": {}}
        if has_probability(r.scorer):
            p = _pair_scores(np.asarray(r.scorer.probability(q, d), dtype=np.float64)[np.ix_(pool, pool)])
            res["calibration"] = calibration(p, y)
            res["reliability"] = reliability(np.clip(p, 0, 1), y)
            hist[r.name]["probability"] = p[shown]
        else:
            res["calibration_note"] = "no probability: a cosine/baseline score is not a probability"
        results.append(res)
    for res in results:
        res["delta_vs_cosine"] = {}
        for m in HEADLINE:
            diff = per_query[res["name"]][m] - per_query["cosine"][m]
            res["delta_vs_cosine"][m] = {"delta": float(diff.mean()), "ci95": bootstrap_ci(diff, bootstrap, seed)}
    classes = Counter(labels[first["query"]])
    skipped = int((~known).sum())
    small = sorted({v for v in labels if v not in classes})
    n_pairs, n_pos = int(len(y)), int(y.sum())
    data_info = {"name": data.name, "label": data.label, "split": data.split or "all", "items": len(data.ids),
                 "skipped_unknown": skipped, "queries": int(len(first["query"])), "pool": int(len(first["pool"])),
                 "classes": len(classes), "min_class": min_class, "small_classes": small_classes,
                 "pairs": n_pairs, "positive_pairs": n_pos,
                 "calibration_sampling": "every unordered pair of pooled items (same label = positive)",
                 "class_sizes": dict(classes.most_common())}
    notes = [f"Labelled items {data.path}, criterion '{data.label}', "
             + (f"split '{data.split}'" if data.split else "every item (the file has no split field)")
             + f": {len(data.ids)} items, {skipped} skipped (no '{data.label}' value or 'unknown').",
             f"Each of the {len(first['query'])} items in the {len(classes)} classes of >= {min_class} items is a "
             f"query over the other {len(first['pool']) - 1} pooled items; relevant = same '{data.label}'. "
             + (f"{len(small)} smaller class(es) ({', '.join(small[:8])}{', ...' if len(small) > 8 else ''}) "
                + ("left out entirely (the benchmark protocol)." if small_classes == "drop"
                   else "kept in the pool as distractors.") if small else "No class is under the minimum."),
             f"Chance mAP (sum of squared class shares of the queries): {first['chance_map']:.4f}. Pair ROC-AUC and "
             f"average precision over all {n_pairs} item pairs of the pool ({n_pos} same-label).",
             "Classes (queries): " + ", ".join(f"{v} {n}" for v, n in classes.most_common()) + ".",
             "Baselines are fitted on the embeddings of the split's items only, without labels."]
    for r in rows:
        if r.kind == "model" and getattr(r.scorer, "mode", None) == "asymmetric":
            notes.append(f"'{r.name}' is asymmetric: each query is projected by its query side (W_q), the pool by "
                         "its document side (W_a); its pair score is the mean of the two directions.")
    return {"task": "labelled", "data": data_info, "primary_metric": "map", "headline": HEADLINE,
            "rows": results, "notes": notes, "_hist": hist}
