"""The evaluators: callables that score one scorer on fixed embeddings and return a flat ``dict[str, float]``.

    ev = RetrievalEvaluator(query_emb, corpus_emb, qrels)      # ranks the whole corpus per query
    ev(scorer)  # {"ndcg@10": ..., "mrr@10": ..., "recall@10": ..., ...}

A scorer is anything with ``score(a, b) -> (na, nb)`` (cosine, a baseline, a trained projection), and
optionally ``probability(a, b)``. Every row of a report goes through the same evaluator on the same
embeddings; ``projector.evaluate.stage`` builds them, the benchmarks reuse them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from projector.metrics import best_threshold, calibration, retrieval_metrics


RETRIEVAL_HEADLINE = ["ndcg@10", "mrr@10", "recall@10", "accuracy@1"]
PAIR_HEADLINE = ["roc_auc", "average_precision", "accuracy"]


def has_probability(scorer) -> bool:
    """Whether the scorer has ``probability()``: only those get calibration metrics (none is invented)."""
    return callable(getattr(scorer, "probability", None))


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
