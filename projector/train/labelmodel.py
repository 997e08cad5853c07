"""The LLM's item labels, recalibrated on yours: a label model fitted on the items you labelled.

A small LLM's labels under a criterion are biased rather than noisy (the 1.5B model called 33 of 63
command-line tools "graphical"), so its labels alone teach the wrong similarity, yet its most confident answers
are mostly right. With your labels there is more to use: a multinomial logistic regression fitted on your
labelled items predicts *your* label from two kinds of evidence per item,

  - the LLM's log-probabilities over its label set (``generate --judge attribute`` on an endpoint that returns
    log-probabilities keeps every item's distribution; a JSON reply counts as a sharp distribution on its
    label, and an item it could not place as a flat one), and
  - the frozen embedding (what the items you labelled look like),

and relabels every item the LLM judged. The most confident ``keep`` fraction then trains beside your labels.
The classes are those of your labels, so they need not be the LLM's label names.

Measured on debian-pkgs interface (241 LLM-judged train items, 3 seeds of trusted items drawn among them, LDA
beside cosine, test mAP; cosine 0.505): from 40 trusted labels, the label model's labels (accuracy 0.667; the
LLM's argmax 0.577) at keep 0.5 gave 0.614, the trusted labels alone 0.573, the LLM's 30% most confident raw
labels beside them 0.580, a recalibration of the log-probabilities alone (no embedding) 0.564.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

EMBEDDING_WEIGHT = 10.0  # unit-norm embeddings scaled to the log-probabilities' range (a few units)
C = 0.5                  # inverse L2 strength of the logistic regression (chosen on debian-pkgs interface)
KEEP = 0.5               # the fraction of relabelled items kept, most confident first
FLOOR = 1e-4             # probability floor before the log (a JSON reply's "sharp" distribution)


@dataclass
class Relabelled:
    labels: list[str]          # your label for each LLM-judged item, as the label model predicts it
    confidence: np.ndarray     # (n,) its probability
    kept: np.ndarray           # (n,) bool: among the ``keep`` most confident
    features: str              # "llm+embedding" or "embedding" (when your items carry no LLM distribution)


def distributions(rows_label, rows_distribution, names: list[str]) -> np.ndarray:
    """The LLM's distribution over ``names`` for each item (n, C): the recorded one (JSON {label: p}), else a
    sharp one on the LLM's label, else (unknown) a flat one."""
    out = np.full((len(rows_label), len(names)), 1.0 / len(names))
    col = {n: j for j, n in enumerate(names)}
    for i, (label, dist) in enumerate(zip(rows_label, rows_distribution)):
        if dist:
            d = json.loads(dist) if isinstance(dist, str) else dist
            out[i] = [float(d.get(n, 0.0)) for n in names]
        elif label in col:
            out[i] = FLOOR
            out[i, col[label]] = 1.0
        out[i] /= max(out[i].sum(), 1e-12)
    return out


def relabel(x_llm: np.ndarray, dist_llm: np.ndarray | None, x_yours: np.ndarray, dist_yours: np.ndarray | None,
            labels_yours: list[str], keep: float = KEEP, seed: int = 0) -> Relabelled:
    """Fit the label model on your items (x_yours (m, d), their LLM distributions (m, C) or None, your labels)
    and relabel the LLM-judged items (x_llm (n, d), dist_llm (n, C) or None)."""
    from sklearn.linear_model import LogisticRegression

    use_llm = dist_llm is not None and dist_yours is not None

    def features(x, dist):
        parts = [np.asarray(x, dtype=np.float64) * EMBEDDING_WEIGHT]
        if use_llm:
            parts.insert(0, np.log(np.clip(dist, FLOOR, 1.0)))
        return np.hstack(parts)

    model = LogisticRegression(C=C, max_iter=3000, random_state=seed).fit(features(x_yours, dist_yours),
                                                                          np.asarray(labels_yours, dtype=object))
    p = model.predict_proba(features(x_llm, dist_llm))                                    # (n, classes)
    confidence = p.max(1)
    kept = np.zeros(len(p), dtype=bool)
    n_keep = int(round(keep * len(p)))
    kept[np.argsort(-confidence, kind="stable")[:n_keep]] = True
    return Relabelled([str(c) for c in model.classes_[p.argmax(1)]], confidence, kept,
                      "llm+embedding" if use_llm else "embedding")
