"""Label quality up front (``generate --judge attribute --trusted-labels FILE``): how the LLM does on the items
you labelled yourself, said before the long run and kept in manifest.json under ``label_quality``.

Your labelled items that are in the corpus are asked first (they count in the run's calls); once they are
answered, ``measure`` compares the LLM's labels with yours:

  - ``accuracy`` (an "unknown" answer counts as a disagreement) beside ``majority_rate``, what always
    answering your most frequent label would score: below it, the LLM knows less than a constant;
  - ``confusion``: your label -> the LLM's labels, counted (a criterion the LLM reads as another kind of label
    set shows here as one of its labels taking every row);
  - with distributions (option log-probabilities), ``confident_half``: the accuracy of its most confident half,
    and the confidence where that half starts (measured on debian-pkgs interface: 53% overall, 80% on that half);
  - ``map_vs_cosine``: whether a map from its labels is expected to beat cosine. Repeated half-splits of your
    items, class by class (``projector.train.crossfit.half_splits``): the closed-form map a statistician tries
    first on few labels (LDA beside cosine, ``projector.train.labelfit.lda_beside_cosine``, α = 1) is fitted on
    the LLM's labels of one half and scored on the other half by label mAP under *your* labels, against cosine
    on the same queries; the paired per-query gain and its bootstrap CI (``projector.train.candidates.paired_gain``).
    Fitted on half your items' LLM labels, the gain is measured low, never flattered.

The figures go into OUT/label_quality.json as soon as they are measured (the long run may be stopped before
manifest.json is written), and into manifest.json's ``label_quality`` at the end.

``verdict`` turns that into one line: expected to beat cosine (the CI above 0), expected to lose (accuracy under
the majority rate, or the CI below 0), or cannot tell. A WARNING then suggests training on your labels.

This module also reads the file for generate (``read``: ``projector.formats.labels.read_trusted_labels`` with the
corpus's passages as the items, so the file that generate reads is the one ``train --train-labels`` reads), with
the label set of ``--labels`` when given (a label outside it is one error naming the file, line and field).
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

from projector.errors import DataError
from projector.formats.labels import TrustedLabels, read_trusted_labels
from projector.formats.pairs import UNKNOWN

FILE = "label_quality.json"  # written into --out as soon as your items are answered (manifest.json: at the end)
MAP_ALPHA = 1.0  # α of the LDA-beside-cosine map tried on the LLM's labels
CONFIDENCE = 0.95  # of the bootstrap CI of the map's gain over cosine


# ---------------------------------------------------------------------------------------------- reading


def read(path, passages, labels=None) -> TrustedLabels:
    """Your labelled items, ids mapped onto the corpus's passage ids (a text the corpus does not hold keeps its
    ``text:`` id); with ``labels`` (``projector.generate.attribute.Labels``) each label normalised onto the set."""
    trusted = read_trusted_labels(path, {p.passage_id: {"text": p.text} for p in passages}, None, role="trusted")
    if labels is not None:
        for k, label in enumerate(trusted.labels):
            name = labels.normalise(label)
            if name is None or name == UNKNOWN:
                raise DataError(f"{trusted.source}:{trusted.lines[k]}: field 'label' {label!r} is not in the "
                                f"--labels set {labels.names}; fix the label, or add it to --labels.")
            trusted.labels[k] = name
        if len(set(trusted.labels)) < 2:
            raise DataError(f"{trusted.source}: every item has the label {trusted.labels[0]!r} on the --labels set; "
                            "a criterion needs items of at least two labels.")
    return trusted


# ---------------------------------------------------------------------------------------------- measuring


def measure(yours: list[str], llm: list[dict], x: np.ndarray | None = None, seed: int = 0) -> dict:
    """Agreement of the LLM's answers ``llm`` (record results: ``label``[, ``distribution``]) with your labels
    ``yours`` (the same items, in order); ``x`` (n, d): the items embedded (normalised), for ``map_vs_cosine``."""
    y = np.asarray(yours, dtype=object)
    z = np.asarray([r["label"] for r in llm], dtype=object)
    n = len(y)
    right = y == z                                                                # (n,)
    counts = Counter(yours)
    majority, top = counts.most_common(1)[0]
    out = {"items": n, "accuracy": round(float(right.mean()), 4), "majority_label": majority,
           "majority_rate": round(top / n, 4),
           "confusion": {t: dict(Counter(z[y == t]).most_common()) for t in sorted(counts)},
           "llm_label_counts": dict(Counter(z).most_common())}
    if all("distribution" in r for r in llm):
        conf = np.array([r["distribution"][r["label"]] for r in llm])             # (n,)
        order = np.argsort(-conf, kind="stable")[: math.ceil(n / 2)]
        out["confident_half"] = {"items": int(len(order)), "accuracy": round(float(right[order].mean()), 4),
                                 "min_confidence": round(float(conf[order].min()), 4)}
    if x is not None:
        out["map_vs_cosine"] = map_vs_cosine(x, yours, list(z), seed)
    out["verdict"] = verdict(out)
    return out


def map_vs_cosine(x: np.ndarray, yours: list[str], llm: list[str], seed: int = 0) -> dict | None:
    """The LDA-beside-cosine map fitted on the LLM's labels of half your items, scored by label mAP under your
    labels on the other half, against cosine (repeated half-splits; None when no split can score anything)."""
    from projector.metrics import label_queries
    from projector.train.candidates import paired_gain
    from projector.train.crossfit import can_crossfit, half_splits
    from projector.train.labelfit import lda_beside_cosine

    if not can_crossfit(yours):
        return None
    y, z = np.asarray(yours, dtype=object), np.asarray(llm, dtype=object)
    ap_map, ap_cos = [], []
    for fit_rows, score_rows in half_splits(yours, seed=seed):
        fit_rows = fit_rows[z[fit_rows] != UNKNOWN]
        if len(set(z[fit_rows])) < 2:
            continue  # the LLM's labels of this half teach nothing
        w = lda_beside_cosine(x[fit_rows], z[fit_rows], MAP_ALPHA)                  # (d, d)
        xs = x[score_rows]                                                          # (m, d)
        zs = xs @ w.T
        zs = zs / np.maximum(np.linalg.norm(zs, axis=1, keepdims=True), 1e-12)
        try:
            ap_cos.append(label_queries(xs @ xs.T, y[score_rows], 2, small_classes="distract")["ap"])
            ap_map.append(label_queries(zs @ zs.T, y[score_rows], 2, small_classes="distract")["ap"])
        except DataError:
            continue
    if not ap_cos:
        return None
    cos, mapped = np.concatenate(ap_cos), np.concatenate(ap_map)
    gain = paired_gain(mapped, cos, "cosine", CONFIDENCE, seed)
    return {"map": f"lda+cosine-{MAP_ALPHA:g}", "cosine_map": round(float(cos.mean()), 4),
            "map_map": round(float(mapped.mean()), 4), "gain": round(gain["mean"], 4), "ci": gain["ci"],
            "confidence": CONFIDENCE, "queries": gain["queries"]}


def verdict(q: dict) -> str:
    """"beats cosine", "loses to cosine" or "cannot tell": what a map from the LLM's labels is expected to do."""
    m = q.get("map_vs_cosine")
    if q["accuracy"] < q["majority_rate"] or (m and m["ci"][1] < 0):
        return "loses to cosine"
    if m and m["ci"][0] > 0:
        return "beats cosine"
    return "cannot tell"


# ---------------------------------------------------------------------------------------------- reporting


def report(q: dict, source: str) -> list[str]:
    """The lines generate prints once your items are answered (a WARNING last, when the verdict is a loss)."""
    lines = [f"label quality on {q['items']} of your labels ({source}): the LLM agrees on {q['accuracy']:.3f} "
             f"(always {q['majority_label']!r}: {q['majority_rate']:.3f})"]
    if h := q.get("confident_half"):
        lines.append(f"  its most confident half ({h['items']} items, confidence >= {h['min_confidence']:.2f}): "
                     f"{h['accuracy']:.3f}")
    for t, row in q["confusion"].items():
        lines.append(f"  yours {t!r} -> LLM " + ", ".join(f"{k!r} {v}" for k, v in row.items()))
    if m := q.get("map_vs_cosine"):
        lines.append(f"  a map from its labels ({m['map']}) vs cosine, your labels scoring (half-splits): mAP "
                     f"{m['map_map']:.3f} vs {m['cosine_map']:.3f}, gain {m['gain']:+.3f} "
                     f"[{m['ci'][0]:+.3f}, {m['ci'][1]:+.3f}]: {q['verdict']}")
    else:
        lines.append(f"  a map from its labels vs cosine: not measured (too few of your items per label); "
                     f"verdict: {q['verdict']}")
    if q["verdict"] == "loses to cosine":
        why = (f"agreement {q['accuracy']:.3f} under always-majority {q['majority_rate']:.3f}"
               if q["accuracy"] < q["majority_rate"] else
               f"a map from them {m['gain']:+.3f} [{m['ci'][0]:+.3f}, {m['ci'][1]:+.3f}] mAP against cosine on your "
               "labels")
        lines.append(f"WARNING: the LLM's labels are expected to lose to cosine ({why}); train on your labels "
                     f"instead: projector train --train-labels {source} (reword --criterion or give --labels if "
                     "its labels are the wrong kind)")
    return lines
