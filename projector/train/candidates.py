"""The maps ``projector.train`` chooses among, and how it chooses: the closed-form candidates, the ranks it
trains at, their calibration, and the rule that picks one on validation (with what the log and
projector.json say about it).

Candidates, all scored by ``projector.train.fit.validate`` on the validation split:

  - the start: frozen cosine (the identity), or ``pca-k`` at a rank k < d (top-k principal directions);
  - closed forms, no gradient steps: qa and pairs, the ridge map ("closed-form", ``projection.closed_form``
    or ``symmetric_closed_form``) and, asymmetric qa from 4·d training pairs, regularised CCA ("cca"); items,
    shrinkage LDA on the train labels ("lda", ``projector.train.labelfit.lda``, rank ≤ classes - 1);
  - the trained map(s): one per rank of ``trained_ranks`` ("trained", "trained-kR").

``select`` keeps the best by the primary metric (``projector.train.fit.primary_metric``: NDCG@10, label mAP for
items); on a tie the simpler candidate, listed first, wins, so a fit that does not beat cosine is never
exported in its place. ``verdict`` is the warning a user must see when training did not beat cosine.
Before that, ``calibrate`` Platt-fits every candidate's scale and bias on validation, so that each one's
``probability()`` means something.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from projector.train.inputs import Data
from projector.train.labelfit import lda, lda_beside_cosine
from projector.metrics import bootstrap_ci, calibration, sample_calibration_pairs
from projector.train.projection import Projection, cca, closed_form, symmetric_closed_form

METRIC_NAMES = {"val_ndcg@10": "NDCG@10", "val_map": "label mAP"}
LDA_BESIDE_COSINE = (0.5, 1.0, 2.0)  # α of the lda+cosine candidates (items)
ITEM_LOW_RANK = 64  # items without --rank train at full rank d and at this rank (if < d): few labels, fewer knobs


def trained_ranks(rank: int | None, dim: int, kind: str) -> list[int]:
    """The ranks of the trained candidates: ``--rank`` (d when None); items without ``--rank`` also
    ``ITEM_LOW_RANK``, since a few hundred noisy labels may fit a rank-64 map better than a full one."""
    if rank is not None or kind != "items" or ITEM_LOW_RANK >= dim:
        return [rank or dim]
    return [dim, ITEM_LOW_RANK]


def closed_form_weights(data: Data, rank_dirs: np.ndarray, mode: str, ridge: float):
    """(W_q, W_a) of the ridge closed-form candidate (qa, pairs), or None when there is nothing to fit."""
    if data.pos is not None:
        A = closed_form(data.q.cpu().numpy(), data.corpus[data.pos].cpu().numpy(), ridge)  # (d, d), q -> q @ A
        W_q = rank_dirs @ A.T                                                             # (k, d)
        return (W_q, rank_dirs) if mode == "asymmetric" else (symmetric_closed_form(
            data.q.cpu().numpy(), data.corpus[data.pos].cpu().numpy(), ridge, len(rank_dirs)), None)
    keep = (data.y == 1).cpu().numpy()
    if keep.sum() < 2:
        return None
    a, b = data.q.cpu().numpy()[keep], data.b.cpu().numpy()[keep]
    if mode == "symmetric":
        return symmetric_closed_form(a, b, ridge, len(rank_dirs)), None
    return rank_dirs @ closed_form(a, b, ridge).T, rank_dirs


def closed_forms(data: Data, rank_dirs: np.ndarray, mode: str, ridge: float,
                 new: Callable[[int], Projection]) -> dict[str, Projection]:
    """The closed-form candidates of ``data`` (see the module docstring); ``new(k)`` makes an empty rank-k
    Projection of the run's mode and normalisation."""
    rank, dim = rank_dirs.shape
    if data.kind == "items":
        # Uncentred: the artifact is a linear map (no offset). Measured on debian-pkgs, centring is worth
        # <= 0.006 label mAP (human labels: interface 0.671 vs 0.665, section 0.379 vs 0.377; LLM labels:
        # interface 0.451 vs 0.445), less than the format change (an affine map, inexact folding) would cost.
        x, y = data.q.cpu().numpy(), data.y.cpu().numpy()
        m = lda(x, y, rank=rank, centre=False)
        out = {"lda": new(m.W.shape[0]).set_weights(m.W)}
        if rank == dim:  # the LDA space beside the cosine space (square map): with few labels it keeps what
            # cosine knew; α weighs the two and validation chooses
            out |= {f"lda+cosine-{a:g}": new(dim).set_weights(lda_beside_cosine(x, y, a)) for a in LDA_BESIDE_COSINE}
        return out
    out = {}
    cf = closed_form_weights(data, rank_dirs, mode, ridge)
    if cf is not None:
        out["closed-form"] = new(rank).set_weights(*cf)
    if mode == "asymmetric" and data.pos is not None and len(data.q) >= 4 * dim:  # CCA needs n >> d
        out["cca"] = new(rank).set_weights(*cca(data.q.cpu().numpy(), data.corpus[data.pos].cpu().numpy(),
                                                rank=rank))
    return out


def calibrate(model: Projection, data: Data, cfg, held_out: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Platt scaling on the validation split: fit only s and b (W frozen; s > 0, so rankings do not change)
    so that ``probability()`` is the rate at which a candidate passage is relevant.

    Training's s and b fit in-batch pairs (1 positive per batch row of 256), a mix unlike the one a user
    thresholds. The fit here uses validation pairs sampled exactly as ``projector.evaluate`` samples its
    calibration pairs (``sample_calibration_pairs``: every positive, ``calibration_hard_negatives``
    top-cosine and ``calibration_random_negatives`` uniform non-relevant passages per query), or, for
    labelled pairs, the validation labels themselves, and for items the pairs the validation items imply
    (``labelfit.item_split``). ``cfg``: seed, calibration_hard_negatives, calibration_random_negatives (a
    ``projector.train.stage.TrainConfig``). ``held_out``: (raw scores (n,), labels (n,)) of pairs the model's
    fit never saw, in place of the validation split's (``projector.train.crossfit``: your labels, out of fold).
    Returns {"pairs", "positives", "ece@15", "logloss"}.
    """
    v = data.val
    if held_out is not None:
        raw, y = held_out
        return _platt(model, raw.to(model.log_scale.device), y.to(model.log_scale.device).float())
    if v.pairs is not None:
        a, b, y = v.pairs
    else:
        cos = v.q @ v.docs.T                                                         # (m, N) frozen cosine
        top = cos.topk(min(cos.shape[1], cfg.calibration_hard_negatives + 16), dim=1).indices.cpu().numpy()
        qi, di, labels = sample_calibration_pairs(top, v.relevant, cos.shape[1], cfg.calibration_hard_negatives,
                                                  cfg.calibration_random_negatives, cfg.seed)
        a, b, y = v.q[torch.as_tensor(qi)], v.docs[torch.as_tensor(di)], torch.as_tensor(labels)
    y = y.to(a.device).float()
    with torch.no_grad():
        raw = (model.project_queries(a) * model.project_documents(b)).sum(-1)   # (n,) what s and b act on
    return _platt(model, raw, y)


def _platt(model: Projection, raw: torch.Tensor, y: torch.Tensor) -> dict:
    """Fit the model's s and b on raw pair scores (n,) and 0/1 labels (n,); the calibration it reaches."""
    params = [model.log_scale, model.bias]
    opt = torch.optim.LBFGS(params, lr=0.5, max_iter=200, line_search_fn="strong_wolfe")
    # Platt's own targets, (N+ + 1) / (N+ + 2) and 1 / (N- + 2) instead of 1 and 0: on validation pairs the map
    # separates perfectly (a few queries a trained map ranks right) the plain log-loss has no minimum and s ran
    # to 1,085 (b -607), so probabilities were exactly 0 or 1; with these they stay finite. Negligible on
    # hundreds of pairs.
    n_pos = y.sum()
    t = torch.where(y > 0, (n_pos + 1) / (n_pos + 2), 1 / (len(y) - n_pos + 2))

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model.log_scale.exp() * raw + model.bias, t)
        loss.backward()
        return loss

    if 0 < y.sum() < len(y):  # both classes, else there is nothing to fit: keep training's s and b
        opt.step(closure)
    with torch.no_grad():
        p = torch.sigmoid(model.log_scale.exp() * raw + model.bias).cpu().numpy()
    cal = calibration(p, y.cpu().numpy().astype(int))
    return {"pairs": int(len(y)), "positives": int(y.sum()), "ece@15": cal["ece@15"], "logloss": cal["logloss"]}


def select(metrics: dict[str, dict], key: str) -> str:
    """The candidate with the best ``metrics[name][key]``; on a tie the one listed first (the simpler) wins.
    ``metrics[name]["gain"]``, where ``gate`` put it, must say the gain over the first candidate is beyond noise."""
    best = None
    for name, m in metrics.items():
        if best is None or m[key] > metrics[best][key] + 1e-9 and m.get("gain", {}).get("beyond_noise", True):
            best = name
    return best


def gate(metrics: dict[str, dict], scores: dict[str, np.ndarray], confidence: float, seed: int = 0) -> None:
    """Put ``gain`` into each candidate's metrics after the first (the start: cosine): its mean gain over the
    start on the validation queries, the paired bootstrap CI of it at ``confidence``, and whether that CI lies
    above 0 (``beyond_noise``; always true at confidence 0). ``select`` then never replaces the start by a map
    whose gain a few dozen validation queries cannot tell from luck. Measured: on 36 synthetic nq-wiki
    validation queries, maps whose validation NDCG@10 rose by +0.010 to +0.020 (one query ranked higher) lost
    0.004-0.018 NDCG@10 (0.6-2.8%) on 8,819 real test queries."""
    start = next(iter(scores))
    for name in list(scores)[1:]:
        metrics[name]["gain"] = paired_gain(scores[name], scores[start], start, confidence, seed)


def paired_gain(scores: np.ndarray, base: np.ndarray, vs: str, confidence: float, seed: int = 0) -> dict:
    """The mean per-query gain of ``scores`` over ``base`` (the candidate named ``vs``) on the same validation
    queries, its paired bootstrap CI at ``confidence``, and whether that CI lies above 0."""
    diff = scores - base                                                        # (m,) paired per-query gains
    lo, hi = bootstrap_ci(diff, seed=seed, alpha=1 - confidence) if confidence and len(diff) else (0.0, 0.0)
    return {"vs": vs, "mean": float(diff.mean()) if len(diff) else 0.0, "ci": [round(lo, 6), round(hi, 6)],
            "confidence": confidence, "queries": int(len(diff)), "beyond_noise": bool(not confidence or lo > 0)}


def verdict(metrics: dict[str, dict], key: str, selected: str, baseline: str) -> str | None:
    """The warning when no trained candidate beat ``baseline`` on validation beyond noise (None when one did),
    naming what is exported instead and, when that is the baseline itself, every candidate's score. Without a
    trained candidate (validation by half-splits of your labels: closed forms only) the best other one is judged."""
    pool = {n: m for n, m in metrics.items() if n.startswith("trained")} or {
        n: m for n, m in metrics.items() if n != baseline}
    trained = select(pool, key)
    if trained is None:
        return None
    t, c = metrics[trained][key], metrics[baseline][key]
    gain = metrics[trained].get("gain", {})
    if t > c + 1e-9 and gain.get("beyond_noise", True):
        return None
    what = METRIC_NAMES[key]
    if t > c + 1e-9:  # higher, but within noise (of the gain over the first candidate: at rank k, pca-k)
        over = "" if gain["vs"] == baseline else f" over {gain['vs']}"
        warning = (f"{'training' if trained.startswith('trained') else trained}'s validation gain over {baseline} is within noise ({what} {trained} {t:.4f} vs "
                   f"{baseline} {c:.4f}, {gain['mean']:+.4f}{over} on {gain['queries']} queries, "
                   f"{gain['confidence']:.0%} CI [{gain['ci'][0]:+.4f}, {gain['ci'][1]:+.4f}]); "
                   f"the exported projection is '{selected}'")
    else:
        warning = (f"{'training' if trained.startswith('trained') else trained} did not beat {baseline} on validation ({what} {trained} {t:.4f} vs {baseline} "
                   f"{c:.4f}); the exported projection is '{selected}'")
    if selected == baseline:
        others = ", ".join(f"{n} {m[key]:.4f}" for n, m in metrics.items() if n != baseline)
        warning += f": no candidate beat it beyond noise ({others})"
    return warning
