"""One training batch: its loss (``TrainStep``, ``batch_loss``) and the hard negatives it is given
(``mine_hard_negatives``, unless ``projector.teach`` judged them).

    hard = mine_hard_negatives(data.q, data.pos, data.corpus, 5)         # (n, 5) corpus rows, -1 pads
    loss = batch_loss(TrainStep(model), data, idx, hard, 5, generator)   # idx (B,) rows of data

qa: in-batch negatives plus the hard and random ones; pairs: the labels themselves, row by row; items: every
in-batch pair of items, similar when the labels agree. Under torchrun each rank computes its share of the
batch against every rank's passages (``projector.train.distributed``). The tensor math is
``projector.train.projection``'s.
"""
from __future__ import annotations

import torch
from torch import nn

from projector.train.distributed import Distributed
from projector.train.inputs import Data
from projector.train.projection import Projection, agreement_targets, drift, labelled_pair_loss, sigmoid_loss


class TrainStep(nn.Module):
    """What DistributedDataParallel wraps: one forward projects a batch's query side, document side and extra
    negatives, and hands back s and b, so every parameter the loss uses went through forward (DDP's rule)."""

    def __init__(self, model: Projection):
        super().__init__()
        self.model = model

    def forward(self, q: torch.Tensor, d: torch.Tensor, extra: torch.Tensor | None = None):
        m = self.model
        zn = m.project_documents(extra) if extra is not None else None
        return m.project_queries(q), m.project_documents(d), zn, m.log_scale.exp(), m.bias


def batch_loss(step: nn.Module, data: Data, idx: torch.Tensor, hard: torch.Tensor | None,
               n_random: int, gen: torch.Generator, ddp: Distributed | None = None,
               stay_close: float = 0.0) -> torch.Tensor:
    """The loss of one batch of row indices ``idx`` (B,), the same on every rank.

    ``stay_close`` λ > 0 (residual/lowrank adapters) adds λ · Σ_rows (drift(query) + drift(passage)) / B: each
    projected vector's squared distance from where the start map W₀ put it (``projection.drift``).

    One process: the loss of the whole batch. Under torchrun (``ddp`` given) this rank computes only its
    contiguous share of the rows, against the passages of *all* ranks (their projections are gathered with
    gradient), and returns its share of the batch loss times the world size: DDP averages gradients over
    ranks, so the step is the one-process step of the same batch.
    """
    rows = idx if ddp is None else ddp.share(idx)                                # (b,) this rank's rows
    extra = None
    if data.pos is not None:
        picks = [hard[idx]] if hard is not None else []
        if n_random:  # drawn for the whole batch on every rank: the generator stays in step with one process
            picks.append(torch.randint(len(data.corpus), (len(idx), n_random), generator=gen).to(idx.device))
        extra = torch.cat(picks, dim=1) if picks else None                       # (B, m) corpus indices
        if extra is not None and ddp is not None:
            extra = ddp.share(extra)
    if data.kind == "items":
        return _item_batch_loss(step, data, idx, rows, ddp, stay_close)
    if data.pos is None:  # labelled pairs: the labels themselves, row by row
        za, zb, _, s, b = step(data.q[rows], data.b[rows])
        loss = labelled_pair_loss(s * (za * zb).sum(-1) + b, data.y[rows]) * len(rows) / len(idx)  # sum / B
        if stay_close:
            loss = loss + stay_close * _drift(step, data.q[rows], data.b[rows], za, zb) / len(idx)
        return loss if ddp is None else loss * ddp.world
    pos = data.pos[rows]                                                         # (b,)
    zq, zd, zn, s, b = step(data.q[rows], data.corpus[pos],
                            None if extra is None else data.corpus[extra.clamp(min=0)])
    all_pos = pos
    if stay_close:  # before the gather: this rank's own passages
        penalty = stay_close * _drift(step, data.q[rows], data.corpus[pos], zq, zd) / len(idx)
    if ddp is not None:  # in-batch negatives from every rank
        zd, all_pos = ddp.gather(zd, len(idx)), data.pos[idx]
    labels = pos[:, None] == all_pos[None, :]               # (b, B): two queries of one passage are both positive
    loss = sigmoid_loss(s * zq @ zd.T + b, labels) * len(rows) / len(idx)  # sum over rows / B
    if extra is not None:
        weight = ((extra >= 0) & (extra != pos[:, None])).to(zq.dtype)         # never a query's own positive
        loss = loss + sigmoid_loss(s * (zn @ zq.unsqueeze(-1)).squeeze(-1) + b, torch.zeros_like(weight),
                                   weight) * len(rows) / len(idx)
    if stay_close:
        loss = loss + penalty
    return loss if ddp is None else loss * ddp.world


def _item_batch_loss(step: nn.Module, data: Data, idx: torch.Tensor, rows: torch.Tensor,
                     ddp: Distributed | None, stay_close: float) -> torch.Tensor:
    """Items: the sigmoid loss over every (row, other item of the batch) cell, similar = same label; the
    diagonal and unknown labels masked (``agreement_targets``). Under torchrun the columns are gathered."""
    za, zb, _, s, b = step(data.q[rows], data.q[rows])                          # (b, k) each: one W, both sides
    penalty = stay_close * _drift(step, data.q[rows], data.q[rows], za, zb) / 2 if stay_close else 0.0  # per item
    place = torch.arange(len(idx), device=idx.device)                           # (B,) positions in the batch
    mine = place if ddp is None else ddp.share(place)                           # (b,) this rank's positions
    if ddp is not None:
        zb = ddp.gather(zb, len(idx))                                           # (B, k)
    labels, weight = agreement_targets(data.y[rows], data.y[idx], mine[:, None] == place[None, :])  # (b, B)
    loss = (sigmoid_loss(s * za @ zb.T + b, labels, weight) * len(rows) + penalty) / len(idx)  # sum over rows / B
    return loss if ddp is None else loss * ddp.world


def _drift(step: nn.Module, q: torch.Tensor, d: torch.Tensor, zq: torch.Tensor, zd: torch.Tensor) -> torch.Tensor:
    """Σ over rows of drift(zq) + drift(zd): q, d (b, d) inputs, zq, zd (b, k) their projections (with grad)."""
    model = getattr(step, "module", step).model                                  # TrainStep, or DDP around it
    with torch.no_grad():
        zq0, zd0 = model.project_queries(q, start=True), model.project_documents(d, start=True)  # (b, k) each
    return (drift(zq, zq0) + drift(zd, zd0)).sum()


@torch.no_grad()
def mine_hard_negatives(q: torch.Tensor, pos: torch.Tensor, corpus: torch.Tensor, n: int,
                        margin: float | None = 0.9, known: list[set[int]] | None = None) -> torch.Tensor:
    """For each query, the ``n`` passages nearest under the frozen encoder that are neither its positive, nor
    another passage ``known`` to answer it, nor (``margin`` not None) a near-duplicate of its positive
    (frozen cosine to the positive > ``margin``: likely false negatives). The one nearest-other-passages
    search: training mines its hard negatives with it, ``projector.teach`` its candidates to grade.

    q (B, d), pos (B,) corpus indices, corpus (N, d) -> (B, n) corpus indices, -1 where too few qualify.
    """
    out = torch.full((len(q), n), -1, dtype=torch.long, device=q.device)
    extra = max((len(k) for k in known), default=0) if known else 0
    take = min(len(corpus), 4 * n + 8 + extra)
    for start in range(0, len(q), 1024):
        qs, ps = q[start:start + 1024], pos[start:start + 1024]
        cand = (qs @ corpus.T).topk(take, dim=1).indices                        # (c, take)
        ok = cand != ps[:, None]
        if margin is not None:
            ok &= (corpus[cand] @ corpus[ps].unsqueeze(-1)).squeeze(-1) <= margin  # (c, take) cos to positive
        for r in range(len(qs)):
            keep = [i for i in cand[r][ok[r]].tolist() if not known or i not in known[start + r]][:n]
            out[start + r, :len(keep)] = torch.tensor(keep, dtype=torch.long)
    return out
