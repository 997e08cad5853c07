"""Item labels (``--judge attribute``) as training data: the checks, the items as ``projector.train.inputs``,
and the closed-form candidate a statistician tries first, shrinkage LDA.

Item labels imply a labelled pair for every two labelled items (same label = similar). ``projector.train``
reads an items folder (``projector.formats.pairs.load_pairs(..., items=True)``), checks it (``check_items``), and
builds from it

  - ``item_data``: the train items with label ids 0..C-1 (``label_ids``), for the one training loop
    (``projector.train.fit``; its loss, ``projector.train.batch``: the sigmoid log-loss over every in-batch
    pair of items, labelled by agreement, the diagonal and unknown labels masked by
    ``projection.agreement_targets``), early-stopped on the validation items' label mAP
    (``projector.metrics.label_map``);
  - ``item_split``: validation or test items as a ``projector.train.inputs.Split`` (label mAP; a sample of the pairs
    they imply for the Platt calibration of ``probability()``);
  - ``lda``: shrinkage LDA, closed form. Within-class covariance shrunk toward a multiple of the identity
    (Ledoit-Wolf), between-class scatter, generalised eigenvectors: W (k ≤ classes-1, d), each direction
    scaled to unit within-class variance. The space is centred on the training mean; ``centre=False`` gives
    the map without that offset, which is what an artifact (a linear map) holds.

Items labelled ``projector.formats.pairs.UNKNOWN`` take part in no pair: they are left out of every split here.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from projector.errors import DataError
from projector.train.inputs import Data, Split
from projector.formats.pairs import DATASET, UNKNOWN, Pairs


# ---------------------------------------------------------------------------------------------- items


def check_items(pairs: Pairs) -> None:
    """What training needs of an items folder's labels: two known labels among the train items (else no
    pair is dissimilar) and two validation items sharing a known label (else label mAP, the selection
    metric, is undefined). A DataError naming the split and the fix otherwise."""
    where = pairs.path / DATASET
    train = Counter(v for v in pairs.splits["train"]["label"] if v != UNKNOWN)
    if len(train) < 2:
        raise DataError(f"{where}/train: known labels {sorted(train)} ({sum(train.values())} of "
                        f"{len(pairs.splits['train']['label'])} items); training needs items of at least two "
                        "labels: label more items, or give generate --labels a set the LLM can apply")
    if not scoreable(pairs.splits["validation"]["label"]):
        val = pairs.splits["validation"]["label"]
        raise DataError(f"{where}/validation: no two items share a known label ({sum(v != UNKNOWN for v in val)} "
                        f"of {len(val)} known), so its label mAP is undefined; generate with a larger validation "
                        "fraction")


def scoreable(labels) -> bool:
    """Whether some known label is held by two items (label mAP needs one query with a relevant item)."""
    return max(Counter(v for v in labels if v != UNKNOWN).values(), default=0) >= 2


def label_ids(train_labels) -> dict[str, int]:
    """The known labels of the train items -> ids 0..C-1 (sorted by name)."""
    return {name: i for i, name in enumerate(sorted(set(train_labels) - {UNKNOWN}))}


def known_items(cols: dict) -> tuple[list[str], list[str]]:
    """(texts, labels) of a split's items (columns id, text, label) whose label is known."""
    keep = [i for i, v in enumerate(cols["label"]) if v != UNKNOWN]
    return [cols["text"][i] for i in keep], [cols["label"][i] for i in keep]


def item_counts(splits: dict) -> dict:
    """Per split: items, known (labelled) items and the count of each label (unknown included)."""
    return {s: {"items": len(c["label"]), "known": sum(v != UNKNOWN for v in c["label"]),
                "labels": dict(Counter(c["label"]).most_common())} for s, c in splits.items()}


def item_data(x: torch.Tensor, labels: list[str], ids: dict[str, int]) -> Data:
    """Train items x (n, d) with their known labels -> ``Data`` of kind "items" (y: label ids (n,))."""
    return Data(None, x, None, None, torch.tensor([ids[v] for v in labels], device=x.device))


def item_split(x: torch.Tensor, labels: list[str], ids: dict[str, int], max_pairs: int = 50_000,
               seed: int = 0) -> Split:
    """Items x (m, d) with known labels as a ``Split``: each item a query over the others (label mAP).

    A label that no train item has gets an id of its own (it is still a class to rank by). ``pairs`` holds
    the pairs the items imply, (a, b, same label), for the calibration: every pair i < j, or ``max_pairs``
    drawn at random (seeded) when there are more.
    """
    extra: dict[str, int] = {}
    for v in labels:
        if v not in ids and v not in extra:
            extra[v] = len(ids) + len(extra)
    y = torch.tensor([ids.get(v, extra.get(v)) for v in labels], dtype=torch.long)            # (m,)
    m = len(y)
    if m * (m - 1) // 2 <= max_pairs:
        i, j = torch.triu_indices(m, m, 1)                                                  # (P,) each
    else:  # i != j uniformly; a repeated pair now and then does not bias a Platt fit
        g = torch.Generator().manual_seed(seed)
        i = torch.randint(m, (max_pairs,), generator=g)
        j = torch.randint(m - 1, (max_pairs,), generator=g)
        j = j + (j >= i).long()
    same = (y[i] == y[j]).long()
    dev = x.device
    return Split(x, x, [], pairs=(x[i.to(dev)], x[j.to(dev)], same.to(dev)), labels=y.to(dev))


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
    labels = np.asarray(labels, dtype=object)
    x = np.asarray(x, dtype=np.float64)[labels != UNKNOWN]
    labels = labels[labels != UNKNOWN]
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


def lda_beside_cosine(x: np.ndarray, labels, alpha: float, shrinkage: float | None = None) -> np.ndarray:
    """The LDA space next to the cosine space, as one square linear map W (d, d).

    Scores in the concatenated space [x ; α·c·L x] are x·y + α²c²·(Lx)·(Ly) (c scales the LDA part to the
    mean squared norm of x): the metric M = I + α²c² LᵀL. Its symmetric square root W = M^{1/2} gives the same
    inner products and norms in d dimensions, so cosine of W x is cosine in the concatenated space and the
    artifact stays a plain d×d map. With few labels the LDA space alone forgets what cosine knew (debian-pkgs
    interface, 20 human labels: LDA 0.522 test mAP, LDA beside cosine 0.557, cosine 0.505); α weighs the two.
    """
    x = np.asarray(x, dtype=np.float64)
    L = lda(x, labels, shrinkage=shrinkage, centre=False).W.astype(np.float64)     # (k, d)
    z = x @ L.T                                                                     # (n, k)
    c2 = (x ** 2).sum(1).mean() / max((z ** 2).sum(1).mean(), 1e-12)
    M = np.eye(x.shape[1]) + alpha ** 2 * c2 * (L.T @ L)                           # (d, d), SPD
    lam, u = np.linalg.eigh(M)
    return ((u * np.sqrt(np.maximum(lam, 0))) @ u.T).astype(np.float32)            # (d, d), W = M^{1/2}
