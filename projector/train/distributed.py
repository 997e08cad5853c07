"""Where training runs: the device choice (``pick_device``) and the torchrun plumbing (``init_distributed``,
``Distributed``, an all-gather that carries gradient back to the rank that made the rows).

    torchrun --nproc_per_node 2 -m projector.train --pairs runs/pairs --out runs/model

One process needs none of this but ``pick_device``; under torchrun every rank holds the same embeddings and
``projector.train.batch`` asks ``Distributed`` for its share of each batch and for the other ranks' projections.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from projector.errors import ProjectorError


def pick_device(name: str = "auto") -> torch.device:
    """"auto": cuda, then mps, then cpu. An explicit device that is not available is an error."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if name not in ("cuda", "mps", "cpu") and not name.startswith("cuda:"):
        raise ProjectorError(f"--device must be auto, cuda, mps or cpu, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ProjectorError(f"--device {name}: torch sees no CUDA GPU here; use --device auto or cpu")
    if name == "mps" and not mps:
        raise ProjectorError("--device mps: torch sees no Apple GPU here; use --device auto or cpu")
    return torch.device(name)


@dataclass
class Distributed:
    """This process's place under ``torchrun`` (RANK / WORLD_SIZE / LOCAL_RANK from the environment).

    Every rank holds the same embeddings and draws the same shuffled batches (same seeds); each computes
    the loss of its contiguous share of a batch's rows against the projected passages gathered from all
    ranks, DDP averages the gradients, and every rank takes the same optimiser step. Rank 0 alone
    validates (and broadcasts the result, so all ranks stop together), checkpoints and exports.
    """

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a batch (sizes differ by at most one)."""
        return rows.tensor_split(self.world)[self.rank]

    def gather(self, z: torch.Tensor, batch: int) -> torch.Tensor:
        """(b, k) on each rank -> (B, k) in batch order, with gradient flowing back to the rank that made it."""
        sizes = [len(c) for c in torch.arange(batch).tensor_split(self.world)]
        pad = max(sizes) - len(z)  # all_gather needs equal shapes: pad, then cut each piece back
        parts = _GatherWithGradient.apply(F.pad(z, (0, 0, 0, pad)) if pad else z, self.rank, self.world)
        return torch.cat([part[:n] for part, n in zip(parts.chunk(self.world), sizes)])

    def mean(self, x: torch.Tensor) -> float:
        """The mean over ranks of a scalar tensor (no gradient)."""
        total = x.detach().clone()
        dist.all_reduce(total)
        return total.item() / self.world

    def broadcast(self, obj):
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        dist.barrier()

    def close(self) -> None:
        """Leave the process group (after a barrier: gloo can abort a rank that tears down while another talks)."""
        dist.barrier()
        dist.destroy_process_group()


class _GatherWithGradient(torch.autograd.Function):
    """all_gather whose backward hands each rank the gradient of its own rows summed over all ranks' losses
    (torch.distributed.nn's version is deprecated in favour of a private module)."""

    @staticmethod
    def forward(ctx, z, rank, world):                                            # (m, k) -> (world * m, k)
        ctx.rank, ctx.rows = rank, len(z)
        parts = [torch.empty_like(z) for _ in range(world)]
        dist.all_gather(parts, z.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)                                                    # sum over every rank's loss
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows], None, None


def init_distributed(device: str = "auto") -> Distributed | None:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on GPUs, gloo on CPU); None otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device)
    if dev.type == "mps":
        raise ProjectorError("torchrun training runs on CUDA GPUs (NCCL) or CPUs (gloo), not mps; pass --device cpu")
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ProjectorError(f"LOCAL_RANK {local} but torch sees {torch.cuda.device_count()} GPU(s): "
                                 "use --nproc_per_node <= the number of GPUs")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        # Long timeout: rank 0 embeds the corpus while the others wait at a barrier (hours for big corpora).
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=12))
    return Distributed(dist.get_rank(), dist.get_world_size(), dev)
