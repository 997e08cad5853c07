"""Every ranking and calibration metric, used by train (early stopping, calibration) and evaluate alike.

Pure numpy functions of rankings, scores and labels; nothing here knows about models, files or tensors.

  ranking      ``ndcg_at_k`` (train's early-stopping metric, equal to trec_eval's ``ndcg_cut_10``: tests check
               it) and ``retrieval_metrics`` (the trec_eval table evaluate reports, via pytrec_eval)
  pairs        ``auc_ap`` (ROC-AUC and AP, numpy only), ``best_threshold``, ``pair_stat``
  labels       ``label_queries`` (per query) and ``label_map`` (averaged): each labelled item a query over the
               others, relevant = same label (AP, P@10, chance mAP): the criterion metric of item labels
               (``--judge attribute``, human labels, ``evaluate --labelled``)
  calibration  ``calibration`` (log-loss, Brier, ECE), ``reliability`` (the diagram's bins), and
               ``sample_calibration_pairs``: the (query, passage) pairs both stages calibrate on
  uncertainty  ``bootstrap_ci`` and ``bootstrap_stat_ci`` (percentile CIs, paired when fed differences)
"""
from __future__ import annotations

import numpy as np

from projector.errors import DataError

# Our names -> trec_eval measures (run truncated to the top 100; MRR@10 is recip_rank on the top 10).
TREC_MEASURES = {"ndcg@10": "ndcg_cut_10", "map@100": "map_cut_100", "recall@1": "recall_1",
                 "recall@5": "recall_5", "recall@10": "recall_10", "recall@100": "recall_100",
                 "accuracy@1": "success_1"}
RETRIEVAL_METRICS = ["ndcg@10", "mrr@10", "map@100", "recall@1", "recall@5", "recall@10", "recall@100",
                     "accuracy@1"]


# ---------------------------------------------------------------------------------------------- ranking


def ndcg_at_k(top: np.ndarray, relevant: list[set[int]], k: int = 10) -> np.ndarray:
    """Per-query NDCG@k with binary relevance, as trec_eval's ``ndcg_cut_k`` computes it.

    top (m, >= k or fewer) ranked document indices, best first; relevant: per query, its relevant indices.
    Returns (m,); a query with no relevant document scores 0 (trec_eval leaves such queries out).
    """
    top = np.asarray(top)[:, :k]
    discount = 1.0 / np.log2(np.arange(2, k + 2))                                # (k,) ranks 1..k
    hits = np.array([[j in rel for j in row] for row, rel in zip(top.tolist(), relevant)],
                    dtype=np.float64).reshape(len(top), top.shape[1])              # (m, k')
    dcg = hits @ discount[:top.shape[1]]                                           # (m,)
    n_rel = np.minimum(np.array([len(r) for r in relevant], dtype=np.int64), k)     # (m,)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[n_rel]                    # (m,) DCG of a perfect ranking
    return np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)


def retrieval_metrics(top: np.ndarray, qrels: list[set[int]]) -> dict[str, np.ndarray]:
    """trec_eval (pytrec_eval) per query on a ranking: {name in RETRIEVAL_METRICS: (m,) values}.

    top (m, k) ranked document indices, best first (k = 100 for map@100 and recall@100 to mean what they say).
    """
    import pytrec_eval

    k = top.shape[1]
    rels = {str(q): {str(d): 1 for d in rel} for q, rel in enumerate(qrels)}
    # Scores by rank (k, k-1, ...) so trec_eval's own sort reproduces our order exactly.
    run = {str(q): {str(d): float(k - r) for r, d in enumerate(row)} for q, row in enumerate(top)}
    run10 = {q: {d: s for d, s in docs.items() if s > k - 10} for q, docs in run.items()}
    res = pytrec_eval.RelevanceEvaluator(rels, set(TREC_MEASURES.values())).evaluate(run)
    res10 = pytrec_eval.RelevanceEvaluator(rels, {"recip_rank"}).evaluate(run10)
    ids = [str(q) for q in range(len(qrels))]
    out = {"mrr@10": np.array([res10[q]["recip_rank"] for q in ids])}
    out |= {name: np.array([res[q][m] for q in ids]) for name, m in TREC_MEASURES.items()}
    return {name: out[name] for name in RETRIEVAL_METRICS}


# ---------------------------------------------------------------------------------------------- pairs


def best_threshold(s: np.ndarray, y: np.ndarray) -> float:
    """Threshold t maximising accuracy of ``s >= t`` on (s, y); midpoint between neighbouring scores."""
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)                                  # positives among the top i+1
    n_neg = len(y) - y.sum()
    correct = tp + n_neg - (np.arange(1, len(y) + 1) - tp)  # predict top i+1 positive
    valid = np.append(s[:-1] > s[1:], True)           # cut only between distinct scores
    correct = np.where(valid, correct, -1)
    i = int(np.argmax(correct))
    if n_neg >= correct[i]:                            # predicting all negative is at least as good
        return float(s[0] + 1.0)
    return float(s[i] - 1e-9) if i == len(s) - 1 else float((s[i] + s[i + 1]) / 2)


def auc_ap(s: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """ROC-AUC and average precision, numpy only: equal to sklearn's (tests check it) at a fraction of its
    per-call overhead, which matters for thousands of bootstrap resamples. Tied scores form one step."""
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan"), float("nan")
    last = np.append(s[1:] != s[:-1], True)            # last item of each group of tied scores
    tp, fp = np.cumsum(y)[last], np.cumsum(1 - y)[last]  # per distinct threshold
    ap = float((np.diff(tp, prepend=0) * tp / (tp + fp)).sum() / n_pos)
    tpr, fpr = np.append(0, tp) / n_pos, np.append(0, fp) / n_neg
    auc = float((np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2).sum())   # trapezoids: ties count one half
    return auc, ap


def pair_stat(name: str, s: np.ndarray, y: np.ndarray, idx: np.ndarray, threshold: float | None = None):
    """``name`` ("accuracy" at ``threshold``, "roc_auc" or "average_precision") of the pairs ``idx``."""
    ys, ss = y[idx], s[idx]
    if name == "accuracy":
        return float(((ss >= threshold) == ys).mean())
    auc, ap = auc_ap(ss, ys)
    return auc if name == "roc_auc" else ap


# ---------------------------------------------------------------------------------------------- labels


SMALL_CLASSES = ("drop", "distract")   # what label_queries does with classes under min_class


def label_queries(sims: np.ndarray, labels, min_class: int = 10, ignore: str | None = None,
                  small_classes: str = "drop") -> dict:
    """Per query: average precision and P@10 of ranking the other items by ``sims``; relevant = same label.

    The one implementation of the criterion metric (``label_map`` averages it; ``projector.evaluate.labelled`` reports
    it per row). sims (n, n): row i scores every item as a candidate for query i (an asymmetric model: the
    query side of item i against the document side of each item); an item is never ranked for itself. Items
    labelled ``ignore`` (e.g. ``projector.formats.pairs.UNKNOWN``) take part in nothing. Classes of fewer than
    ``min_class`` items give no queries; ``small_classes="drop"`` (the benchmark protocol) leaves them out of
    the pool too, ``"distract"`` keeps them in it as distractors (relevant to no query).

    Returns ap (m,) and p_at_10 (m,) per query, query (m,) and pool (p,) item indices (ascending),
    chance_map (the sum of squared class shares over the queries: the mAP of a random ranking, about) and
    classes (the number of query classes).
    """
    if small_classes not in SMALL_CLASSES:
        raise DataError(f"small_classes must be one of {SMALL_CLASSES}, got {small_classes!r}")
    labels = np.asarray(labels, dtype=object)
    sims = np.asarray(sims, dtype=np.float64)
    if sims.shape != (len(labels), len(labels)):
        raise DataError(f"label_queries: sims has shape {sims.shape}, expected ({len(labels)}, {len(labels)})")
    known = labels != ignore if ignore is not None else np.ones(len(labels), dtype=bool)
    names, counts = np.unique(labels[known], return_counts=True)
    big = set(names[counts >= min_class])
    query = np.flatnonzero(known & np.array([lab in big for lab in labels], dtype=bool))
    pool = query if small_classes == "drop" else np.flatnonzero(known)
    if len(query) < 2:
        raise DataError(f"label_map: {len(query)} items in classes of >= {min_class} items; nothing to score")
    p = len(pool)
    self_col = np.searchsorted(pool, query)                                       # (m,) each query's own column
    s = sims[np.ix_(query, pool)]                                                 # (m, p)
    s[np.arange(len(query)), self_col] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, : p - 1]                     # (m, p-1): self (last) cut
    _, y = np.unique(labels[pool], return_inverse=True)                           # (p,) class ids
    yq = y[self_col]                                                              # (m,)
    rel = (y[order] == yq[:, None]).astype(np.float64)                            # (m, p-1)
    prec = np.cumsum(rel, axis=1) / np.arange(1, p)[None, :]
    n_rel = rel.sum(1)
    ap = np.where(n_rel > 0, (prec * rel).sum(1) / np.maximum(n_rel, 1), 0.0)
    share = np.unique(yq, return_counts=True)[1] / len(query)
    return {"ap": ap, "p_at_10": rel[:, :10].mean(1), "query": query, "pool": pool,
            "chance_map": float((share ** 2).sum()), "classes": int(len(big))}


def label_map(z: np.ndarray, labels, min_class: int = 10, ignore: str | None = None,
              small_classes: str = "drop") -> dict:
    """Each item a query over the other items, ranked by cosine of ``z`` (n, k); relevant = same label.

    ``label_queries`` on cosine similarities, averaged: items labelled ``ignore`` and (by default) classes
    of fewer than ``min_class`` items are left out entirely. Returns map, p_at_10, chance_map (the sum of
    squared class shares), queries, classes.
    """
    z = np.asarray(z, dtype=np.float64)
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    r = label_queries(z @ z.T, labels, min_class, ignore, small_classes)
    return {"map": float(r["ap"].mean()), "p_at_10": float(r["p_at_10"].mean()), "chance_map": r["chance_map"],
            "queries": int(len(r["query"])), "classes": r["classes"]}


# ---------------------------------------------------------------------------------------------- calibration


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 15) -> dict[str, list]:
    """Per equal-width bin of predicted probability: mean prediction, observed positive rate, count."""
    idx = np.clip((np.asarray(p) * bins).astype(int), 0, bins - 1)
    counts = np.bincount(idx, minlength=bins)
    conf = np.bincount(idx, weights=p, minlength=bins) / np.maximum(counts, 1)
    acc = np.bincount(idx, weights=y, minlength=bins) / np.maximum(counts, 1)
    return {"confidence": conf.tolist(), "positive_rate": acc.tolist(), "count": counts.tolist()}


def calibration(p: np.ndarray, y: np.ndarray, bins: int = 15) -> dict[str, float]:
    """Log-loss, Brier score and expected calibration error (``bins`` equal-width bins) of probabilities p."""
    from sklearn.metrics import brier_score_loss, log_loss

    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    r = reliability(p, y, bins)
    counts = np.array(r["count"])
    ece = float((counts / counts.sum() * np.abs(np.array(r["positive_rate"]) - np.array(r["confidence"]))).sum())
    return {"logloss": float(log_loss(y, p, labels=[0, 1])), "brier": float(brier_score_loss(y, p)),
            f"ece@{bins}": ece}


def sample_calibration_pairs(cos_top: np.ndarray, qrels: list[set[int]], n_corpus: int, hard: int,
                             rand: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query row, corpus row, label): all positives, ``hard`` top-cosine and ``rand`` random negatives."""
    rng = np.random.default_rng(seed)
    qi, di, y = [], [], []
    for q, rel in enumerate(qrels):
        negs = [d for d in cos_top[q] if d not in rel][:hard]
        pool = min(rand, n_corpus - len(rel) - len(negs))
        chosen: set[int] = set()
        while len(chosen) < pool:
            d = int(rng.integers(n_corpus))
            if d not in rel and d not in negs:
                chosen.add(d)
        for d, label in [(d, 1) for d in sorted(rel)] + [(int(d), 0) for d in negs] + [(d, 0) for d in chosen]:
            qi.append(q)
            di.append(d)
            y.append(label)
    return np.array(qi), np.array(di), np.array(y)


# ---------------------------------------------------------------------------------------------- bootstrap


def bootstrap_ci(values: np.ndarray, n: int = 1000, seed: int = 0, alpha: float = 0.05) -> list[float]:
    """Percentile CI of the mean of per-item ``values`` (differences, for a paired bootstrap)."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values, dtype=np.float64)
    # 100 resamples at a time: (100, n_items) indices stay small even for 20k queries
    means = np.concatenate([values[rng.integers(0, len(values), (min(100, n - i), len(values)))].mean(axis=1)
                            for i in range(0, n, 100)])
    return [float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))]


def bootstrap_stat_ci(stat, n_items: int, n: int = 1000, seed: int = 0, alpha: float = 0.05) -> list[float]:
    """Percentile CI of ``stat(idx)`` over resampled item indices (for non-decomposable metrics: AUC, AP)."""
    rng = np.random.default_rng(seed)
    vals = [stat(rng.integers(0, n_items, n_items)) for _ in range(n)]
    return [float(np.nanquantile(vals, alpha / 2)), float(np.nanquantile(vals, 1 - alpha / 2))]
