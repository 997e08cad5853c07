"""Training-free (or closed-form) similarities that every trained projection is compared against.

Each baseline is a small scorer with the same surface as a loaded ``Projection`` (``project_queries``,
``project_documents``, ``score``), so ``projector.evaluate`` pushes baselines and trained models through
the very same evaluator. Scikit-learn conventions: ``__init__`` stores parameters, ``fit`` learns state
that ends in ``_`` and returns ``self``; applying an unfitted baseline raises.

Corpus-fitted baselines (mean-centring, whitening, all-but-the-top) are fitted on the L2-normalised
*corpus* embeddings only — never on queries — and score by cosine after their transform. The closed form
is the only one that needs training pairs (query, positive passage) and is fitted on the pairs' train split.

    cos  = Cosine().fit(corpus)                       # what users have today
    zca  = Whitening("zca").fit(corpus)
    s    = zca.score(query_emb, corpus)               # (nq, nd)
"""
from __future__ import annotations

import numpy as np

from projector.errors import DataError
from projector.formats.vectors import l2_normalise


def _check_2d(x, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise DataError(f"{what} must be a non-empty (n, d) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError(f"{what} contains NaN or inf; re-embed the texts")
    return x


class Baseline:
    """Cosine after a linear (affine) map fitted on the corpus: ``cos(T(q), T(d))``.

    Subclasses implement ``_fit(corpus)`` setting ``mean_`` (d,) and ``components_`` (d, k) so that
    ``T(x) = (normalise(x) - mean_) @ components_``.
    """

    name = "baseline"
    has_probability = False   # none of these has a calibrated probability; say so rather than invent one
    cosine = True             # False: raw dot product of the (untransformed) embeddings

    def fit(self, corpus: np.ndarray, queries: np.ndarray | None = None, positives: np.ndarray | None = None):
        corpus = _check_2d(corpus, "corpus embeddings")
        self._fit(l2_normalise(corpus) if self.cosine else corpus, queries, positives)
        self.dim_ = corpus.shape[1]
        return self

    def _fit(self, corpus, queries, positives) -> None:
        d = corpus.shape[1]
        self.mean_ = np.zeros(d, dtype=np.float32)
        self.components_ = np.eye(d, dtype=np.float32)

    def _check_fitted(self, x) -> np.ndarray:
        if not hasattr(self, "components_"):
            raise DataError(f"{type(self).__name__} is not fitted; call .fit(corpus_embeddings) first")
        x = _check_2d(x, "embeddings")
        if x.shape[1] != self.dim_:
            raise DataError(f"{self.name}: embeddings have dimension {x.shape[1]}, fitted on {self.dim_}; "
                            "use the same encoder for fitting and scoring")
        return x

    def project_queries(self, emb: np.ndarray) -> np.ndarray:
        x = self._check_fitted(emb)
        if not self.cosine:
            return x
        return l2_normalise((l2_normalise(x) - self.mean_) @ self.components_)   # (n, k)

    def project_documents(self, emb: np.ndarray) -> np.ndarray:
        return self.project_queries(emb)

    def score(self, q_emb: np.ndarray, d_emb: np.ndarray) -> np.ndarray:
        return self.project_queries(q_emb) @ self.project_documents(d_emb).T  # (nq, nd)


class Cosine(Baseline):
    """Frozen cosine similarity (the identity map)."""

    name = "cosine"


class DotProduct(Baseline):
    """Raw dot product of the encoder's vectors (equals cosine for encoders that normalise)."""

    name = "dot"
    cosine = False


class MeanCentred(Baseline):
    """Cosine after subtracting the corpus mean (removes the common direction all vectors share)."""

    name = "mean-centred"

    def _fit(self, corpus, queries, positives) -> None:
        super()._fit(corpus, queries, positives)
        self.mean_ = corpus.mean(axis=0)


class Whitening(Baseline):
    """Whitening fitted on the corpus, then cosine.

    ``method="zca"``: ``W = U diag(1/sqrt(λ+eps)) Uᵀ`` (full rank). ``method="pca"``: ``W = U_k
    diag(1/sqrt(λ_k+eps))`` keeping the top ``n_components`` (BERT-whitening, Su et al. 2021). Full-rank PCA
    whitening is ZCA up to a rotation, so it ranks identically; PCA is only distinct when truncated.
    ``eps`` is added to the eigenvalues of the covariance of unit vectors (total variance <= 1); 0.01
    whitens only partially, which measured best on nq-wiki (docs/research.md).
    """

    def __init__(self, method: str = "zca", eps: float = 0.01, n_components: int | None = None):
        if method not in ("zca", "pca"):
            raise DataError(f"whitening method must be 'zca' or 'pca', got {method!r}")
        if eps < 0:
            raise DataError(f"whitening eps must be >= 0, got {eps}")
        self.method, self.eps, self.n_components = method, eps, n_components
        self.name = "zca-whitening" if method == "zca" else f"pca-whitening-{n_components or 'full'}"

    def _fit(self, corpus, queries, positives) -> None:
        d = corpus.shape[1]
        k = self.n_components or d
        if not 1 <= k <= d:
            raise DataError(f"n_components must be in [1, {d}], got {k}")
        if len(corpus) < 2:
            raise DataError("whitening needs at least 2 corpus passages")
        self.mean_ = corpus.mean(axis=0)
        cov = np.cov(corpus - self.mean_, rowvar=False).astype(np.float64)   # (d, d)
        lam, u = np.linalg.eigh(cov)                                          # ascending
        lam, u = lam[::-1].clip(min=0), u[:, ::-1]
        scale = 1.0 / np.sqrt(lam + self.eps)
        if self.method == "zca":
            self.components_ = ((u * scale) @ u.T).astype(np.float32)           # (d, d)
        else:
            self.components_ = (u[:, :k] * scale[:k]).astype(np.float32)        # (d, k)
        self.explained_variance_ = lam[:k]


class AllButTheTop(Baseline):
    """Mu & Viswanath (2018): remove the mean and the top ``n_components`` principal directions.

    Default ``n_components = max(1, round(d / 100))`` as in the paper.
    """

    def __init__(self, n_components: int | None = None):
        self.n_components = n_components
        self.name = "all-but-the-top" + (f"-{n_components}" if n_components else "")

    def _fit(self, corpus, queries, positives) -> None:
        d = corpus.shape[1]
        k = self.n_components or max(1, round(d / 100))
        if not 1 <= k < d:
            raise DataError(f"all-but-the-top n_components must be in [1, {d - 1}], got {k}")
        self.mean_ = corpus.mean(axis=0)
        _, _, vt = np.linalg.svd(corpus - self.mean_, full_matrices=False)
        top = vt[:k].T                                                          # (d, k)
        self.components_ = (np.eye(d, dtype=np.float32) - top @ top.T).astype(np.float32)
        self.removed_components_ = top.T


class ClosedForm(Baseline):
    """Ridge least-squares map fitted on training pairs (``projector.train.projection.closed_form``).

    ``fit(corpus, queries, positives)`` with ``queries[i]`` answered by ``positives[i]``; the corpus is not used.
    Asymmetric (qa): ``A = argmin ||Q A - P||² + ridge ||A - I||²`` and ``score = cos(q A, d)`` -- only the query
    side moves, so a document index is unchanged. Symmetric (labelled pairs): ``symmetric_closed_form``'s W
    (fitted both ways, PSD part) on both sides, ``score = cos(W a, W b)``.
    """

    name = "closed-form"

    def __init__(self, ridge: float = 30.0, symmetric: bool = False):
        if ridge < 0:
            raise DataError(f"closed-form ridge must be >= 0, got {ridge}")
        self.ridge, self.symmetric = ridge, symmetric

    def _fit(self, corpus, queries, positives) -> None:
        from projector.train.projection import closed_form, symmetric_closed_form

        if queries is None or positives is None:
            raise DataError("the closed form needs training pairs (queries, positives); pass --pairs")
        q = l2_normalise(_check_2d(queries, "training queries"))
        p = l2_normalise(_check_2d(positives, "training positives"))
        self.mean_ = np.zeros(q.shape[1], dtype=np.float32)
        if self.symmetric:
            self.components_ = symmetric_closed_form(q, p, self.ridge).T        # (d, k)
        else:
            self.components_ = closed_form(q, p, self.ridge)                    # (d, d)

    def project_documents(self, emb: np.ndarray) -> np.ndarray:
        if self.symmetric:
            return self.project_queries(emb)
        return l2_normalise(self._check_fitted(emb))


def default_baselines(dim: int, closed_form: str | None = None) -> list[Baseline]:
    """The rows every report shows, in order (cosine first: every delta is taken against it).

    ``closed_form``: None (no training pairs), "qa" (asymmetric) or "pairs" (symmetric).
    """
    rows = [Cosine(), DotProduct(), MeanCentred(), Whitening("zca"),
            Whitening("pca", n_components=max(1, dim // 2)), AllButTheTop()]
    if closed_form:
        rows.append(ClosedForm(symmetric=closed_form == "pairs"))
    return rows
