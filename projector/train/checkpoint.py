"""The checkpoint a re-run resumes from: ``checkpoint/state.safetensors``, written after every epoch.

    save_checkpoint(ckpt_dir, model, opt, anchor, best_params, state, cfg, data_key)
    state, best_params = load_checkpoint(ckpt_dir, model, opt, anchor, cfg)

One safetensors file holds the weights, the best weights, the identity-decay anchor and AdamW's moments; the
loop state, the config fingerprint and the data fingerprint (``projector.train.inputs.data_fingerprint``) are
its JSON metadata, so a checkpoint of other settings or other data is never resumed.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from projector.errors import ProjectorError
from projector.files import write_bytes


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
