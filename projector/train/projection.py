"""The learned similarity: a linear projection of frozen embeddings, and its pure score/loss math.

    asymmetric:  logit(q, d) = s · n(W_q q) · n(W_a d) + b        W_q, W_a ∈ R^{k×d}
    symmetric:   logit(a, b) = s · n(W a)   · n(W b)   + b        (one W for both sides)
    P(relevant) = sigmoid(logit)

``n`` is L2 normalisation (``normalize="both"``, the measured best); ``"query"`` normalises only the query
side, which makes the folded query map ``M = W_aᵀ W_q`` exact for ranking (see ``projector.train.export``);
``"none"`` uses raw dot products (the policy is ``projector.formats.vectors``, shared with the loader). The inputs
q, d are the encoder's L2-normalised embeddings.

Initialisation: identity for k = d, so step 0 ranks exactly like frozen cosine; the top-k principal
directions for k < d. ``closed_form`` is a ridge least-squares map (no gradient steps).

How a map is learned (``adapter``, issue 11; docs/research.md): ``"full"`` learns W itself; ``"residual"``
learns ΔW in ``W = W₀ + ΔW`` and ``"lowrank"`` learns U (k, r), V (d, r) in ``W = W₀ + U Vᵀ``, with W₀ the
start (``set_weights``: identity = cosine) kept as a buffer, so the loss can ask where a vector started
(``drift``, the ``--stay-close`` penalty). ``query_only`` keeps W_a at its start (a buffer, not learned).
Whatever the adapter, ``query_weight``/``doc_weight`` are the materialised (k, d) maps.

The module is a small ``nn.Module`` whose state is a flat dict of tensors (``W_q``/``W_a`` or ``W``,
``scale``, ``bias``): that dict is what ``projector.train.export`` writes to ``model.safetensors``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from projector.formats.artifact import MODES
from projector.errors import DataError
from projector.formats.vectors import NORMALIZE, normalises_documents, normalises_queries


ADAPTERS = ("full", "residual", "lowrank")


class Projection(nn.Module):
    """Learnable W_q (and W_a), log-scale and bias. Parameters only; the math is in the functions below.

    adapter "full": parameters ``W_q``, ``W_a`` (k, d). "residual": buffer ``W_q_start`` + parameter ``dW_q``
    (k, d); "lowrank": buffer ``W_q_start`` + parameters ``U_q`` (k, r), ``V_q`` (d, r) (likewise for ``a``).
    ``query_only``: ``W_a`` is a buffer whatever the adapter.
    """

    def __init__(self, dim: int, rank: int | None = None, mode: str = "asymmetric", normalize: str = "both",
                 scale_init: float = 20.0, bias_init: float = -10.0, adapter: str = "full", adapter_rank: int = 16,
                 query_only: bool = False):
        super().__init__()
        rank = dim if rank is None else rank
        if mode not in MODES:
            raise DataError(f"mode must be one of {MODES}, got {mode!r}")
        if normalize not in NORMALIZE:
            raise DataError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
        if not 1 <= rank <= dim:
            raise DataError(f"rank must be in [1, {dim}] (the embedding dimension), got {rank}")
        if scale_init <= 0:
            raise DataError(f"scale_init must be > 0, got {scale_init}")
        if adapter not in ADAPTERS:
            raise DataError(f"adapter must be one of {ADAPTERS}, got {adapter!r}")
        if adapter == "lowrank" and not 1 <= adapter_rank <= min(rank, dim):
            raise DataError(f"adapter_rank must be in [1, {min(rank, dim)}], got {adapter_rank}")
        if query_only and mode != "asymmetric":
            raise DataError("query_only needs mode asymmetric (a symmetric model has one W for both sides)")
        self.dim, self.rank, self.mode, self.normalize = dim, rank, mode, normalize
        self.adapter, self.adapter_rank, self.query_only = adapter, adapter_rank, query_only
        gen = torch.Generator().manual_seed(0)  # lowrank V: the same settings give the same start
        for side in ("q", "a") if mode == "asymmetric" else ("q",):
            self._add_map(side, torch.eye(rank, dim), frozen=query_only and side == "a", gen=gen)
        if mode == "symmetric":
            self.W_a = None  # public: a symmetric model has one W (callers test ``W_a is None``)
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(scale_init))))  # s = exp(.) stays > 0
        self.bias = nn.Parameter(torch.tensor(float(bias_init)))

    def _add_map(self, side: str, start: torch.Tensor, frozen: bool, gen: torch.Generator) -> None:
        """Register one side's tensors (see the class docstring); ``start`` (k, d)."""
        if frozen:
            self.register_buffer(f"W_{side}", start.clone())
        elif self.adapter == "full":
            setattr(self, f"W_{side}", nn.Parameter(start.clone()))
        else:
            self.register_buffer(f"W_{side}_start", start.clone())                          # (k, d) W₀
            if self.adapter == "residual":
                setattr(self, f"dW_{side}", nn.Parameter(torch.zeros_like(start)))           # (k, d) ΔW = 0
            else:  # LoRA-style: U = 0 so ΔW = U Vᵀ = 0 at the start; V orthonormal columns so U moves ΔW 1:1
                v = torch.linalg.qr(torch.randn(self.dim, self.adapter_rank, generator=gen)).Q  # (d, r)
                setattr(self, f"U_{side}", nn.Parameter(torch.zeros(self.rank, self.adapter_rank)))  # (k, r)
                setattr(self, f"V_{side}", nn.Parameter(v))

    def _learns(self, side: str) -> bool:
        return self.adapter != "full" and not (self.query_only and side == "a")

    def weight(self, side: str, start: bool = False) -> torch.Tensor:
        """The (k, d) map of side "q" or "a" as it stands (W₀ + ΔW, W₀ + U Vᵀ materialised); ``start``: W₀
        (residual/lowrank only; a full or frozen side is its own start only before training)."""
        side = "q" if self.mode == "symmetric" else side
        if not self._learns(side):
            return getattr(self, f"W_{side}")
        w0 = getattr(self, f"W_{side}_start")                                              # (k, d)
        if start:
            return w0
        if self.adapter == "residual":
            return w0 + getattr(self, f"dW_{side}")
        return w0 + getattr(self, f"U_{side}") @ getattr(self, f"V_{side}").T            # (k, r) @ (r, d)

    @property
    def query_weight(self) -> torch.Tensor:
        return self.weight("q")

    @property
    def doc_weight(self) -> torch.Tensor:
        return self.weight("a")

    def project_queries(self, x: torch.Tensor, start: bool = False) -> torch.Tensor:
        z = x @ self.weight("q", start).T                                  # (B, d) @ (d, k) -> (B, k)
        return F.normalize(z, dim=-1) if normalises_queries(self.normalize) else z

    def project_documents(self, x: torch.Tensor, start: bool = False) -> torch.Tensor:
        z = x @ self.weight("a", start).T                                  # (N, k)
        return F.normalize(z, dim=-1) if normalises_documents(self.normalize) else z

    def forward(self, q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """All-pairs logits (B, N) for queries q (B, d) and documents d (N, d)."""
        return pairwise_logits(self.project_queries(q), self.project_documents(d), self.log_scale.exp(), self.bias)

    @torch.no_grad()
    def set_weights(self, W_q: np.ndarray, W_a: np.ndarray | None = None) -> "Projection":
        """Set the maps (k, d) each; W_a None: W_q. For residual/lowrank this is the start W₀ (ΔW reset to 0)."""
        for side, w in (("q", W_q), ("a", W_q if W_a is None else W_a))[:2 if self.mode == "asymmetric" else 1]:
            w = torch.as_tensor(w, dtype=torch.float32)
            if not self._learns(side):
                getattr(self, f"W_{side}").copy_(w)
                continue
            getattr(self, f"W_{side}_start").copy_(w)
            getattr(self, f"dW_{side}" if self.adapter == "residual" else f"U_{side}").zero_()
        return self

    def tensors(self) -> dict[str, np.ndarray]:
        """The flat state written to model.safetensors (float32 numpy): plain maps whatever the adapter."""
        out = {"W": self.query_weight} if self.mode == "symmetric" else {"W_q": self.query_weight,
                                                                          "W_a": self.doc_weight}
        out = {k: v.detach().float().cpu().numpy() for k, v in out.items()}
        out["scale"] = self.log_scale.detach().exp().float().cpu().numpy().reshape(1)
        out["bias"] = self.bias.detach().float().cpu().numpy().reshape(1)
        return out


# ------------------------------------------------------------------------------------------ pure math


def pairwise_logits(zq: torch.Tensor, zd: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """s · zq zdᵀ + b: (B, k), (N, k) -> (B, N)."""
    return scale * (zq @ zd.T) + bias


def sigmoid_loss(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """SigLIP loss: binary log-loss summed over all (query, document) cells, averaged over queries.

    logits, labels (B, N) with labels 1 for relevant cells, 0 otherwise; weight (B, N) 0 masks a cell out.
    Summing over N (not averaging) keeps the many negatives from drowning the one positive per row.
    """
    cell = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")  # (B, N)
    if weight is not None:
        cell = cell * weight
    return cell.sum() / logits.shape[0]


def agreement_targets(y_q: torch.Tensor, y_d: torch.Tensor, same_item: torch.Tensor):
    """Targets of the item-pair loss (supervised contrastive in sigmoid form): every cell (i, j) of a batch of
    labelled items is a pair, similar when the two items share a label.

    y_q (b,), y_d (B,) label ids (-1: unknown), same_item (b, B) True where row i and column j are one item.
    Returns labels (b, B) bool and weight (b, B) float: 0 for an item with itself and for unknown labels
    (an unsure item takes part in no pair). ``sigmoid_loss(logits, labels, weight)`` is the loss.
    """
    labels = y_q[:, None] == y_d[None, :]
    weight = (y_q[:, None] >= 0) & (y_d[None, :] >= 0) & ~same_item
    return labels, weight.float()


def labelled_pair_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary log-loss of labelled pairs: logits, labels (B,)."""
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def drift(z: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
    """Squared distance of each projected vector from where the start map put it: (B, k), (B, k) -> (B,).
    The ``--stay-close`` penalty (Search-Adaptor): with the identity start, z0 is the original embedding."""
    return (z - z0).pow(2).sum(-1)


def pair_logits(model: Projection, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise logits of aligned pairs: a, b (B, d) -> (B,)."""
    za, zb = model.project_queries(a), model.project_documents(b)     # (B, k) each
    return model.log_scale.exp() * (za * zb).sum(-1) + model.bias


# ------------------------------------------------------------------------------ initialisation, closed form


def principal_directions(x: np.ndarray, k: int) -> np.ndarray:
    """Top-k principal directions of x (n, d) as rows: (k, d). For k = d returns the identity."""
    d = x.shape[1]
    if k == d:
        return np.eye(d, dtype=np.float32)
    xc = x.astype(np.float64) - x.mean(axis=0)
    _, vecs = np.linalg.eigh(xc.T @ xc)                                # ascending eigenvalues
    return vecs[:, ::-1][:, :k].T.astype(np.float32)                   # (k, d)


def closed_form(queries: np.ndarray, passages: np.ndarray, ridge: float = 30.0) -> np.ndarray:
    """Ridge least-squares map from queries to their positive passages, shrunk toward the identity.

    queries, passages (n, d), row i of one answered by row i of the other (L2-normalised embeddings).
    Returns A (d, d) minimising ``||Q A - P||² + ridge ||A - I||²``, i.e. ``(QᵀQ + λI)⁻¹ (QᵀP + λI)``.
    Use it as ``score(q, d) = cos(q A, d)``: only the query side moves (``W_q = Aᵀ``, ``W_a = I``), so an
    existing document index stays valid. Same map as ``projector.evaluate.baselines.ClosedForm``.
    """
    q = np.asarray(queries, dtype=np.float64)
    p = np.asarray(passages, dtype=np.float64)
    if q.ndim != 2 or q.shape != p.shape or len(q) == 0:
        raise DataError(f"closed_form needs two non-empty (n, d) arrays of equal shape, got {q.shape} and {p.shape}")
    if ridge < 0:
        raise DataError(f"ridge must be >= 0, got {ridge}")
    eye = np.eye(q.shape[1])
    return np.linalg.solve(q.T @ q + ridge * eye, q.T @ p + ridge * eye).astype(np.float32)


def cca(queries: np.ndarray, passages: np.ndarray, ridge: float = 1.0, rank: int | None = None):
    """Regularised CCA between the two sides: (W_q, W_a), each (k, d), no gradient steps.

    Each side is whitened with its covariance shrunk toward ``ridge`` × its mean eigenvalue (queries are few
    next to d, so the raw covariance is singular), the whitened cross-covariance is factored
    ``U diag(ρ) Vᵀ``, and ``W_q = diag(√ρ) Uᵀ C_qq^{-1/2}``, ``W_a = diag(√ρ) Vᵀ C_pp^{-1/2}``: the dot
    product of the projections weighs each canonical direction by its correlation ρ.
    """
    q = np.asarray(queries, dtype=np.float64)
    p = np.asarray(passages, dtype=np.float64)
    if q.ndim != 2 or q.shape != p.shape or len(q) < 2:
        raise DataError(f"cca needs two (n >= 2, d) arrays of equal shape, got {q.shape} and {p.shape}")
    q, p = q - q.mean(0), p - p.mean(0)

    def inv_sqrt(c):  # (d, d) -> C^{-1/2} after shrinkage
        c = c + ridge * np.trace(c) / len(c) * np.eye(len(c))
        lam, u = np.linalg.eigh(c)
        return (u / np.sqrt(np.maximum(lam, 1e-12))) @ u.T

    wq, wp = inv_sqrt(q.T @ q / len(q)), inv_sqrt(p.T @ p / len(p))          # (d, d) each
    u, rho, vt = np.linalg.svd(wq @ (q.T @ p / len(q)) @ wp)                 # descending correlations
    k = rank or q.shape[1]
    root = np.sqrt(rho[:k])[:, None]
    return (root * (u[:, :k].T @ wq)).astype(np.float32), (root * (vt[:k] @ wp)).astype(np.float32)


def symmetric_closed_form(a: np.ndarray, b: np.ndarray, ridge: float = 30.0, rank: int | None = None) -> np.ndarray:
    """Closed form for a symmetric similarity from positive pairs (a_i, b_i): W (k, d) with WᵀW ≈ sym(A).

    A is ``closed_form`` fitted both ways (a -> b and b -> a); its symmetric part S is made positive
    semi-definite by dropping negative eigenvalues, and W = diag(√λ) Uᵀ keeps the top ``rank`` of them,
    so that (W a)·(W b) = aᵀ S b.
    """
    A = closed_form(np.concatenate([a, b]), np.concatenate([b, a]), ridge).astype(np.float64)
    lam, u = np.linalg.eigh((A + A.T) / 2)                             # ascending
    lam, u = lam[::-1].clip(min=0), u[:, ::-1]
    k = rank or a.shape[1]
    return (np.sqrt(lam[:k])[:, None] * u[:, :k].T).astype(np.float32)  # (k, d)


def init_weights(model: Projection, embeddings: np.ndarray) -> Projection:
    """Step-0 weights: identity (k = d: ranks exactly like cosine) or top-k principal directions (k < d)."""
    return model.set_weights(principal_directions(embeddings, model.rank))
