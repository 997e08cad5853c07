"""The training loop and what it needs: the embedded inputs (``Data``, ``Split``), one batch's loss
(``TrainStep``, ``batch_loss``), hard negatives (mined, or judged by ``projector.teach``), validation (``validate``, ``ndcg_at_10``,
``label_map_score``, ``primary_metric``) and the checkpoint a re-run resumes from (``save_checkpoint``,
``load_checkpoint``: checkpoint/state.safetensors).

Three kinds of data run through the one loop (``Data.kind``): "qa" (queries and their positive passages,
in-batch negatives), "pairs" (aligned labelled pairs, row by row) and "items" (labelled items, ``--judge
attribute``: every in-batch pair of items is a pair, similar when the labels agree). Early stopping and
selection use NDCG@10 for the first two and the items' label mAP for the third.

``projector.train`` embeds the pairs into a ``Data``, builds the candidates and calls ``fit`` on the
trained one; under torchrun the same loop runs on every rank (``projector.train.distributed``).

    state = fit(model, data, cfg, Path("runs/model/checkpoint"))   # model now holds the best epoch's weights
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from projector.train.distributed import Distributed
from projector.errors import ProjectorError
from projector.files import write_bytes
from projector.metrics import label_queries, ndcg_at_k
from projector.progress import TrainingBar
from projector.train.projection import (Projection, agreement_targets, drift, labelled_pair_loss, pair_logits,
                                  sigmoid_loss)



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


# ---------------------------------------------------------------------------------------------- inputs


@dataclass
class Split:
    """A split as a ranking problem: each query ranks every doc; ``relevant`` says which are right.

    qa: ``pos`` is each query's positive (its row in ``docs``, the corpus); labelled pairs: ``pairs`` holds the
    split's aligned rows and labels, which the loss and the calibration use instead of the ranking. Items:
    ``labels`` holds each item's label id, every item is a query over the others (``docs`` is ``q``) and
    ``pairs`` holds pairs of items with agreement labels, for the calibration.
    """

    q: torch.Tensor  # (m, d) queries / text_a that have a positive / items
    docs: torch.Tensor  # (N, d) the corpus / distinct text_b / the items again
    relevant: list[set[int]]  # per query: rows of docs that are relevant (items: unused, labels say it)
    pos: torch.Tensor | None = None  # (m,) qa: row of each query's positive in docs
    pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # pairs: (a (n, d), b (n, d), y (n,))
    labels: torch.Tensor | None = None  # (m,) items: label id of each item (known labels only)


@dataclass
class Data:
    """Embedded inputs as tensors on the training device. qa: queries + index of the positive passage into
    the corpus; pairs: aligned a/b rows with labels; items: the items with their label ids (no ``b``).
    ``val`` is the validation split."""

    corpus: torch.Tensor | None  # (n_passages, d)  qa only
    q: torch.Tensor  # (n, d) train queries / text_a / items
    pos: torch.Tensor | None  # (n,) qa: corpus index of each query's positive
    b: torch.Tensor | None  # (n, d) pairs: text_b
    y: torch.Tensor | None  # (n,) pairs: labels 0/1; items: label ids 0..C-1 (-1 unknown: in no pair)
    val: Split | None = None
    negatives: torch.Tensor | None = None  # (n, m) qa: corpus indices of judged hard negatives (-1 pads), teach's
    notes: dict = field(default_factory=dict)  # what the data builders did (projector.train.data), for projector.json

    @property
    def kind(self) -> str:
        """"qa", "pairs" or "items", read off which tensors are present."""
        return "qa" if self.pos is not None else "pairs" if self.b is not None else "items"


def data_fingerprint(data: Data) -> str:
    """Content key of the training inputs (train tensors and validation labels): a checkpoint made on other data
    (a pairs folder that grew, another --max-items) is never resumed."""
    h = hashlib.sha256()
    v = data.val
    # the validation split too: it decides the best epoch, so a checkpoint whose "best" was measured on other
    # validation queries (a generate folder that grew keeps its first N train pairs) must not be resumed
    val = () if v is None else (v.q, v.docs, v.pos, v.labels, *(v.pairs or ()))
    for t in (data.corpus, data.q, data.pos, data.b, data.y, data.negatives, *val):
        if t is not None:
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def primary_metric(data: Data) -> str:
    """The validation metric that early stopping and candidate selection maximise."""
    return "val_map" if data.kind == "items" else "val_ndcg@10"


# ---------------------------------------------------------------------------------------------- one batch


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


# ---------------------------------------------------------------------------------------------- checkpoint


def save_checkpoint(ckpt_dir: Path, model, opt, anchor, best_params, state, cfg, data_key: str | None = None) -> None:
    """One safetensors file (weights, best weights, AdamW moments; loop state as JSON metadata), atomic."""
    from safetensors.torch import save

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    t = {f"model.{n}": p.detach() for n, p in model.named_parameters()}
    t.update({f"best.{n}": p for n, p in best_params.items()})
    t.update({f"anchor.{n}": p for n, p in anchor.items()})
    for i, p in enumerate(model.parameters()):
        for k, v in opt.state.get(p, {}).items():
            t[f"opt.{i}.{k}"] = torch.as_tensor(v).reshape(-1) if k == "step" else v
    meta = {"state": json.dumps(state), "config": cfg.fingerprint(), **({"data": data_key} if data_key else {})}
    # files.write_bytes: atomic and fsynced, mode per umask (save_file made 0600 files), a full disk is an OSError
    # naming this file (save_file's Rust writer raised a SafetensorError with the OS error as text), and the
    # temp file of a run killed mid-write is swept by the next write. Temp files of the save_file this replaces
    # (".state.<pid>.tmp", safetensors' own ".tmpXXXXXX") were never swept: drop them too.
    for stale in [*ckpt_dir.glob(".state.*.tmp"), *ckpt_dir.glob(".tmp*")]:
        stale.unlink(missing_ok=True)
    write_bytes(ckpt_dir / "state.safetensors",
                save({k: v.float().contiguous().cpu() for k, v in t.items()}, metadata=meta))


def checkpoint_data(ckpt_dir: Path) -> str | None:
    """The data fingerprint a checkpoint was saved with (None: unreadable, or saved before it was recorded)."""
    from safetensors import safe_open

    try:
        with safe_open(str(ckpt_dir / "state.safetensors"), framework="pt") as f:
            return (f.metadata() or {}).get("data")
    except Exception:
        return None  # load_checkpoint says what is wrong with it


def load_checkpoint(ckpt_dir: Path, model, opt, anchor, cfg):
    """Restore what ``save_checkpoint`` wrote into model, opt and anchor; returns (loop state, best weights)."""
    from safetensors import safe_open

    path = ckpt_dir / "state.safetensors"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta, t = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
        state = json.loads(meta["state"])
    except Exception as e:
        raise ProjectorError(f"checkpoint {path} is unreadable ({e}); delete {ckpt_dir} to start over") from e
    if meta.get("config") != cfg.fingerprint():
        raise ProjectorError(f"{ckpt_dir} holds a run with other settings; use a new --out, or delete {ckpt_dir} "
                             "to start over with these settings")
    device = next(model.parameters()).device
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(t[f"model.{n}"])
        for n in anchor:
            anchor[n].copy_(t[f"anchor.{n}"])
    for i, p in enumerate(model.parameters()):
        if f"opt.{i}.step" in t:
            opt.state[p] = {"step": t[f"opt.{i}.step"].reshape(()).cpu(),
                            "exp_avg": t[f"opt.{i}.exp_avg"].to(device), "exp_avg_sq": t[f"opt.{i}.exp_avg_sq"].to(device)}
    best = {n: t[f"best.{n}"].to(device) for n, _ in model.named_parameters()}
    return state, best
