"""Symmetric maps fitted from item labels (``--judge attribute`` data): the candidates and their score.

Item labels imply a labelled pair for every two labelled items (same label = similar). Two ways to turn
them into a symmetric W (score = cos(W a, W b)):

  - ``lda``: shrinkage LDA, closed form, the statistician's first try. Within-class covariance shrunk
    toward a multiple of the identity (Ledoit-Wolf), between-class scatter, generalised eigenvectors:
    W (k ≤ classes-1, d), each direction scaled to unit within-class variance. Returns the training mean
    too: the space is centred (``centre=False`` gives the map without the offset, for an artifact that
    cannot store one).
  - ``fit_pairs``: the symmetric ``projection.Projection`` trained with the sigmoid log-loss over all
    in-batch item pairs labelled by agreement (supervised contrastive in sigmoid form; unknown items and
    the diagonal masked out), from the identity (step 0 = cosine), early-stopped on validation mAP.

``candidates`` fits them all and ranks them, with cosine, by ``projector.metrics.label_map`` on validation
items (the criterion metric, also the early-stopping one). Items labelled ``projector.pairs.UNKNOWN`` take
part in no pair. Reading the items is ``projector.pairs.load_items``'s.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from projector.errors import DataError
from projector.metrics import label_map
from projector.pairs import UNKNOWN
from projector.projection import Projection, init_weights, pairwise_logits, sigmoid_loss
from projector.vectors import l2_normalise


def _unit(x) -> torch.Tensor:
    """(n, d) float32 unit rows (norms in float64, as the loader: item texts can be any length)."""
    return torch.from_numpy(l2_normalise(x, precision=np.float64))


def _known(x, labels):
    labels = np.asarray(labels, dtype=object)
    keep = labels != UNKNOWN
    return np.asarray(x)[keep], labels[keep]


# ---------------------------------------------------------------------------------------- closed form: LDA


@dataclass
class LinearMap:
    W: np.ndarray  # (k, d)
    mean: np.ndarray  # (d,) subtracted before W (zeros when not centred)
    shrinkage: float = 0.0

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.W.T.astype(np.float64)


def ledoit_wolf(residuals: np.ndarray) -> float:
    """Ledoit-Wolf shrinkage intensity toward (tr S / d) I for the covariance of centred rows (n, d)
    (scikit-learn's estimator)."""
    from sklearn.covariance import ledoit_wolf_shrinkage

    return float(ledoit_wolf_shrinkage(np.asarray(residuals, dtype=np.float64), assume_centered=True))


def lda(x: np.ndarray, labels, shrinkage: float | None = None, rank: int | None = None,
        centre: bool = True) -> LinearMap:
    """Shrinkage LDA on items (n, d) with labels (unknown dropped): W (k, d), k = min(rank, classes - 1).

    ``shrinkage`` None: Ledoit-Wolf on the within-class residuals; else a float in [0, 1].
    """
    x, labels = _known(x, labels)
    x = np.asarray(x, dtype=np.float64)
    names, y = np.unique(labels, return_inverse=True)
    if len(names) < 2:
        raise DataError(f"lda needs at least two labels among the known items, got {list(names)}")
    n, d = x.shape
    means = np.stack([x[y == c].mean(0) for c in range(len(names))])            # (C, d)
    prior = np.bincount(y) / n
    resid = x - means[y]
    alpha = ledoit_wolf(resid) if shrinkage is None else float(shrinkage)
    sw = resid.T @ resid / n
    sw = (1 - alpha) * sw + alpha * np.trace(sw) / d * np.eye(d)
    m = prior @ means
    sb = (means - m).T @ (prior[:, None] * (means - m))
    lam, u = np.linalg.eigh(sw)
    inv_root = (u / np.sqrt(np.maximum(lam, 1e-12))) @ u.T                      # Sw^{-1/2}
    ev, v = np.linalg.eigh(inv_root @ sb @ inv_root)                              # ascending
    k = min(len(names) - 1, rank or d)
    W = (inv_root @ v[:, ::-1][:, :k]).T                                          # (k, d): vᵀ Sw v = 1
    return LinearMap(W.astype(np.float32), (m if centre else np.zeros(d)).astype(np.float32), alpha)


# ----------------------------------------------------------------------------- trained: sigmoid pair loss


def _pair_targets(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Same-label targets and a mask (no diagonal, no unknown = -1) for a batch of label ids (B,)."""
    same = (y[:, None] == y[None, :]).float()
    mask = (y[:, None] >= 0) & (y[None, :] >= 0)
    mask &= ~torch.eye(len(y), dtype=torch.bool, device=y.device)
    return same, mask.float()


def item_pair_loss(model: Projection, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sigmoid log-loss over all in-batch pairs of items x (B, d), labelled by agreement of y (B,)."""
    z = model.project_queries(x)
    logits = pairwise_logits(z, z, model.log_scale.exp(), model.bias)
    same, mask = _pair_targets(y)
    return sigmoid_loss(logits, same, mask)


def fit_pairs(x_train, y_train, x_val, y_val, rank: int | None = None, epochs: int = 300,
              batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 0.0, patience: int = 20,
              seed: int = 0, min_class: int = 2, log=None) -> tuple[Projection, dict]:
    """Train a symmetric Projection on labelled items; keep the epoch with the best validation mAP.

    Returns the model (best weights) and a record {best_epoch, val_map, val_map_cosine, history}.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xt, yt = _known(x_train, y_train)
    names = sorted(set(yt))
    if len(names) < 2:
        raise DataError(f"fit_pairs needs at least two labels among the known train items, got {names}")
    index = {n: i for i, n in enumerate(names)}
    xt = _unit(xt)
    ytt = torch.as_tensor([index[v] for v in yt])
    d = xt.shape[1]
    model = Projection(d, rank, mode="symmetric", scale_init=10.0, bias_init=-5.0)
    if rank is not None and rank < d:
        init_weights(model, xt.numpy())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    def val_score():
        with torch.no_grad():
            z = model.project_queries(_unit(x_val)).numpy()
        return label_map(z, y_val, min_class=min_class, ignore=UNKNOWN)["map"]

    best = val_score()
    record = {"val_map_cosine": best, "history": []}
    best_state, best_epoch, since = {k: v.clone() for k, v in model.state_dict().items()}, 0, 0
    n = len(ytt)
    for epoch in range(1, epochs + 1):
        perm = torch.as_tensor(rng.permutation(n))
        losses = []
        for s in range(0, n, batch_size):
            idx = perm[s:s + batch_size]
            if len(idx) < 2:
                continue
            loss = item_pair_loss(model, xt[idx], ytt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        score = val_score()
        record["history"].append({"epoch": epoch, "loss": float(np.mean(losses)), "val_map": score})
        if log:
            log(record["history"][-1])
        if score > best + 1e-6:
            best, best_epoch, since = score, epoch, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            since += 1
            if since >= patience:
                break
    model.load_state_dict(best_state)
    record.update(best_epoch=best_epoch, val_map=best, epochs_run=epoch)
    return model, record


# ------------------------------------------------------------------------------------ candidates, selection


def candidates(x_train, y_train, x_val, y_val, ranks=(None,), min_class: int = 2, **fit_kw) -> list[dict]:
    """Every candidate map fitted on the train items, scored on the validation items (label mAP), best first.

    Each entry: name, transform (callable (n, d) -> (n, k)), val (label_map on validation), and the
    fitted object (``LinearMap`` or ``Projection``). Cosine is a candidate (the identity), so a fit that
    does not beat it on validation is never chosen.
    """
    def scored(name, transform, obj):
        return {"name": name, "transform": transform, "fitted": obj,
                "val": label_map(transform(np.asarray(x_val)), y_val, min_class=min_class, ignore=UNKNOWN)}

    out = [scored("cosine", lambda x: np.asarray(x, dtype=np.float64), None)]
    m = lda(x_train, y_train)
    out.append(scored(f"lda k={m.W.shape[0]}", m.transform, m))
    for rank in ranks:
        model, rec = fit_pairs(x_train, y_train, x_val, y_val, rank=rank, min_class=min_class, **fit_kw)

        def project(x, model=model):
            with torch.no_grad():
                return model.project_queries(_unit(x)).numpy()

        out.append(scored(f"sigmoid pairs k={model.rank}", project, model))
    return sorted(out, key=lambda c: -c["val"]["map"])
