"""The training loop (``fit``) and how each epoch is judged: validation (``validate``, ``query_scores``,
``ndcg_at_10``, ``label_map_score``, ``primary_metric``), early stopping (``improves``) and the loop's defaults.

Three kinds of data run through the one loop (``Data.kind``): "qa" (queries and their positive passages,
in-batch negatives), "pairs" (aligned labelled pairs, row by row) and "items" (labelled items, ``--judge
attribute``: every in-batch pair of items is a pair, similar when the labels agree). Early stopping and
selection use NDCG@10 for the first two and the items' label mAP for the third.

What the loop stands on, one file each: its inputs (``projector.train.inputs``: ``Data``, ``Split``), one
batch's loss and its hard negatives (``projector.train.batch``), and the checkpoint a re-run resumes from
(``projector.train.checkpoint``: checkpoint/state.safetensors).

``projector.train`` embeds the pairs into a ``Data``, builds the candidates and calls ``fit`` on the
trained one; under torchrun the same loop runs on every rank (``projector.train.distributed``).

    state = fit(model, data, cfg, Path("runs/model/checkpoint"))   # model now holds the best epoch's weights
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from projector.metrics import label_queries, ndcg_at_k
from projector.progress import TrainingBar
from projector.train.batch import TrainStep, batch_loss, mine_hard_negatives
from projector.train.checkpoint import checkpoint_data, load_checkpoint, save_checkpoint
from projector.train.distributed import Distributed
from projector.train.inputs import METRICS, Data, Split, data_fingerprint
from projector.train.projection import Projection, agreement_targets, labelled_pair_loss, pair_logits, sigmoid_loss

__all__ = ["FitSettings", "LOOP_DEFAULTS", "loop_defaults", "primary_metric", "query_scores", "ndcg_at_10",
           "label_map_score", "validate", "improves", "fit"]


class FitSettings(Protocol):
    """What the loop reads of its config (``projector.train.stage.TrainConfig`` is one): declared here so that fit
    depends on no stage module and every arrow points down."""
    epochs: int | None  # None: the data kind's default (``LOOP_DEFAULTS``)
    patience: int | None
    batch_size: int
    lr: float | None
    weight_decay: float
    identity_decay: float
    hard_negatives: int
    hard_negative_margin: float
    random_negatives: int
    stay_close: float
    seed: int

    def fingerprint(self) -> str: ...

log = logging.getLogger("projector.train")

# The loop's settings where the config says None, per data kind: (qa and pairs, items). A few hundred
# labelled items make one or two batches an epoch, so items need a larger step, more epochs and more
# patience: on 300 debian-pkgs items (human interface labels) lr 1e-4 with patience 5 stopped at cosine
# (test label mAP 0.507 vs 0.505), lr 1e-3 with 300 epochs and patience 20 reached 0.673.
LOOP_DEFAULTS = {"lr": (1e-4, 1e-3), "epochs": (100, 300), "patience": (5, 20)}


def loop_defaults(cfg: FitSettings, kind: str) -> dict:
    """{setting: value} for the loop settings that ``cfg`` leaves None, for data of ``kind``."""
    return {k: v[kind == "items"] for k, v in LOOP_DEFAULTS.items() if getattr(cfg, k) is None}


def primary_metric(data: Data) -> str:
    """The validation metric that early stopping and candidate selection maximise."""
    return METRICS[data.kind]


# ---------------------------------------------------------------------------------------------- validation


@torch.no_grad()
def query_scores(model: Projection, split: Split) -> np.ndarray:
    """Per query of a split, the primary metric's own score (m,): NDCG@10 ranking all docs (binary relevance,
    ``metrics.ndcg_at_k``), or for items the average precision of ranking the other items by the cosine of
    their projections (``metrics.label_queries``, classes of one item left out). Their mean is the validation
    metric; the paired differences between two models say whether one beats the other beyond noise."""
    if split.labels is not None:
        z = torch.cat([model.project_queries(split.q[i:i + 4096]) for i in range(0, len(split.q), 4096)])  # (m, k)
        z = z.double().cpu().numpy()
        z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        return label_queries(z @ z.T, split.labels.cpu().numpy(), min_class=2)["ap"]
    zd = model.project_documents(split.docs)                                    # (N, k)
    tops = [(model.project_queries(split.q[i:i + 512]) @ zd.T)                   # (c, N); s, b do not change ranks
            .topk(min(10, len(zd)), dim=1).indices.cpu().numpy() for i in range(0, len(split.q), 512)]
    top = np.concatenate(tops) if tops else np.zeros((0, 10), dtype=np.int64)  # (m, 10)
    return ndcg_at_k(top, split.relevant, 10)


def ndcg_at_10(model: Projection, split: Split) -> float:
    """Mean NDCG@10 of the model ranking all docs for each query of the split."""
    return float(query_scores(model, split).sum() / max(len(split.q), 1))


def label_map_score(model: Projection, split: Split) -> float:
    """Label mAP of a split of items (``metrics.label_map``'s, under ``normalize="both"``)."""
    return float(query_scores(model, split).mean())


@torch.no_grad()
def validate(model: Projection, data: Data, batch_size: int, split: Split | None = None) -> dict:
    """val_logloss (the training objective on validation, same batch size) and the primary metric:
    val_ndcg@10, or val_map for items."""
    model.eval()
    v = data.val if split is None else split
    if v.labels is not None:  # items: in-batch item-pair loss over validation batches in a fixed order
        losses = [sigmoid_loss(model(x, x), *agreement_targets(y, y, torch.eye(len(y), dtype=torch.bool,
                                                                               device=y.device))).item()
                  for i in range(0, len(v.q), batch_size) for x, y in [(v.q[i:i + batch_size],
                                                                         v.labels[i:i + batch_size])]]
        model.train()
        return {"val_logloss": float(np.mean(losses)), "val_map": label_map_score(model, v)}
    if v.pairs is None:  # qa: in-batch sigmoid loss over validation batches in a fixed order
        losses = [sigmoid_loss(model(v.q[i:i + batch_size], v.docs[p]), p[:, None] == p[None, :]).item()
                  for i in range(0, len(v.q), batch_size) for p in [v.pos[i:i + batch_size]]]
        logloss = float(np.mean(losses))
    else:
        a, b, y = v.pairs
        logloss = labelled_pair_loss(pair_logits(model, a, b), y).item()
    model.train()
    return {"val_logloss": logloss, "val_ndcg@10": ndcg_at_10(model, v)}


# ---------------------------------------------------------------------------------------------- the loop


def improves(row: dict, key: str, best: float, best_logloss: float | None) -> bool:
    """Whether an epoch's validation ``row`` beats the best so far: a higher ranking metric, or the same one
    and a lower validation loss. A ranking metric over a few dozen validation queries is a step function
    that small steps leave unchanged: on 34 synthetic nq-wiki queries every epoch tied the first, so patience
    ran out after 6 one-batch steps with the map still at its start. The continuous loss breaks the tie."""
    if row[key] > best + 1e-9:
        return True
    return row[key] >= best - 1e-9 and best_logloss is not None and row["val_logloss"] < best_logloss - 1e-6


def fit(model: Projection, data: Data, cfg: FitSettings, ckpt_dir: Path | None = None, on_epoch=None,
        ddp: Distributed | None = None) -> dict:
    """The training loop: AdamW over shuffled batches, validation each epoch, early stopping, best weights
    kept, a checkpoint after every epoch (resumed from if present). Returns the state dict of the loop.
    Under torchrun (``ddp``) the same loop runs on every rank (see ``Distributed``). Settings left None take
    ``loop_defaults`` (``projector.train`` resolves them the same way before it saves its config)."""
    if loop_defaults(cfg, data.kind):
        cfg = dataclasses.replace(cfg, **loop_defaults(cfg, data.kind))
    device = data.q.device
    main = ddp is None or ddp.main
    key = primary_metric(data)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # identity decay target: the map's parameters as they start (full: W = identity; residual: ΔW = 0)
    anchor = {n: p.detach().clone() for n, p in model.named_parameters() if n not in ("log_scale", "bias")}
    state = {"epoch": 0, "best": None, "best_logloss": None, "best_epoch": None, "bad_epochs": 0, "history": [],
             "done": False}
    best_params = {n: p.detach().clone() for n, p in model.named_parameters()}
    fingerprint = data_fingerprint(data)
    saved = ckpt_dir is not None and (ckpt_dir / "state.safetensors").exists()
    if saved and checkpoint_data(ckpt_dir) not in (fingerprint, None):
        log.warning("%s was trained on other data (the pairs changed): starting over", ckpt_dir)
        saved = False  # the first epoch's checkpoint replaces it
    if saved:
        state, best_params = load_checkpoint(ckpt_dir, model, opt, anchor, cfg)
        log.info("resuming after epoch %d (best %s %.4f)", state["epoch"], key, state["best"] or float("nan"))
    step = TrainStep(model)
    if ddp is not None:
        from torch.nn.parallel import DistributedDataParallel

        step = DistributedDataParallel(step, device_ids=[device] if device.type == "cuda" else None)
    hard = data.negatives  # judged by the LLM (projector.teach): they replace mined ones
    if hard is None and cfg.hard_negatives and data.pos is not None:
        hard = mine_hard_negatives(data.q, data.pos, data.corpus, cfg.hard_negatives, cfg.hard_negative_margin)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    n = len(data.q)
    bar = TrainingBar(cfg.epochs, max(1, n // cfg.batch_size), state["epoch"], enabled=main)  # a terminal only
    while not state["done"] and state["epoch"] < cfg.epochs:
        epoch, started, total = state["epoch"] + 1, time.time(), 0.0
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)  # per-epoch: resume == uninterrupted
        perm = torch.randperm(n, generator=gen).to(device)
        steps = max(1, n // cfg.batch_size)  # drop the ragged tail: a batch of 3 is a poor in-batch problem
        for i in range(steps):
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size] if n >= cfg.batch_size else perm  # (B,)
            with amp:
                loss = batch_loss(step, data, idx, hard, cfg.random_negatives, gen, ddp, cfg.stay_close)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if cfg.identity_decay:
                _decay_toward(model, anchor, cfg.lr * cfg.identity_decay)
            # the logged loss is the whole batch's: under torchrun the ranks' shares summed
            total += loss.item() if ddp is None else ddp.mean(loss)
            bar.step()
        trained = time.time()
        row = None
        if main:
            row = {"epoch": epoch, "train_loss": total / steps, **validate(model, data, cfg.batch_size),
                   "lr": cfg.lr, "seconds": round(time.time() - started, 3),
                   "train_seconds": round(trained - started, 3)}
        if ddp is not None:  # one decision for all ranks: rank 0's validation
            row = ddp.broadcast(row)
        better = state["best"] is None or improves(row, key, state["best"], state.get("best_logloss"))
        if better:
            state.update(best=row[key], best_logloss=row["val_logloss"], best_epoch=epoch, bad_epochs=0)
            best_params = {n_: p.detach().clone() for n_, p in model.named_parameters()}
        else:
            state["bad_epochs"] += 1
        state["history"].append(row)
        state["epoch"] = epoch
        state["done"] = state["bad_epochs"] >= cfg.patience or epoch >= cfg.epochs
        if main:
            bar.epoch(row, better, log, f"epoch %d  train_loss %.4f  val_logloss %.4f  {key} %.4f%s  (%.1fs)",
                      epoch, row["train_loss"], row["val_logloss"], row[key], "  *best" if better else "",
                      row["seconds"], key=key)
            if ckpt_dir is not None:
                save_checkpoint(ckpt_dir, model, opt, anchor, best_params, state, cfg, fingerprint)
            if on_epoch is not None:
                on_epoch(state)
    bar.close()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(best_params[name])
    return state


@torch.no_grad()
def _decay_toward(model: Projection, anchor: dict[str, torch.Tensor], rate: float) -> None:
    """Decoupled decay of the weights toward their initial values (``--identity-decay``), per step."""
    for name, p in model.named_parameters():
        if name in anchor:
            p.sub_(rate * (p - anchor[name]))
