"""Multi-process / multi-device encoding with sentence-transformers' own pool: which processes encode, and
the pool's lifetime.

``workers=N`` / ``devices=[...]`` (or more than one visible CUDA device) encode with N processes of
``SentenceTransformer.start_multi_process_pool``: CPU processes, or round-robin over the CUDA devices. A pool
is not started for fewer than ``POOL_MIN`` texts (starting workers that import torch takes seconds), and
``with encoding_pool(...)`` keeps one pool for every ``embed`` call inside the block:

    from projector.embed.pool import encoding_pool
    with encoding_pool(None, workers=4, device="cpu"):
        x = embed(texts)                    # the block's pool encodes the misses

Each worker dies with its parent (Linux), ignores Ctrl-C (the parent stops the pool) and uses
``threads_per_worker`` torch threads (default: the cores this process may use / the CPU workers). Imports
only the standard library at import time; torch loads when a plan is resolved.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys

from projector.embed.encoder import encoder_source, load_encoder
from projector.errors import ProjectorError

log = logging.getLogger(__name__)

POOL_MIN = 512  # fewer texts to encode than this are encoded in-process: starting workers costs seconds


class _WorkerDevice(str):
    """A device name for ``start_multi_process_pool`` that, when the spawned worker unpickles it, first makes
    the worker die with its parent (Linux), ignore Ctrl-C (the parent stops the pool), and use ``threads``
    torch threads. It arrives in the worker as a plain ``str``."""

    def __new__(cls, name: str, threads: int | None):
        self = super().__new__(cls, name)
        self.threads, self.parent = threads, os.getpid()
        return self

    def __reduce__(self):
        return _worker_setup, (str(self), self.threads, self.parent)


def _worker_setup(device: str, threads: int | None, parent: int) -> str:
    if os.getpid() == parent:  # unpickled in the parent itself (a copy): change nothing here
        return device
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before prctl
                os._exit(1)
    if threads:
        import torch

        torch.set_num_threads(threads)
    return device


def cores() -> int:
    """The CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class PoolPlan:
    """Which processes encode: resolved on first need (that imports torch), the pool started on first use."""

    def __init__(self, encoder, workers: int | None, devices, device: str | None, threads: int | None = None):
        if workers is not None and int(workers) < 1:
            raise ProjectorError(f"encode workers must be >= 1, got {workers}")
        if devices is not None and (isinstance(devices, str) or not all(isinstance(d, str) for d in devices)):
            raise ProjectorError(f"devices must be a list of device names like ['cuda:0', 'cuda:1'], got {devices!r}")
        self.encoder, self.workers, self.devices, self.device = encoder, workers, devices, device
        self.threads, self.pool, self.model, self._targets = threads, None, None, False

    def targets(self) -> list[str] | None:
        """The pool's devices, or None for in-process encoding."""
        if self._targets is False:
            self._targets = self._resolve()
        return self._targets

    def _resolve(self) -> list[str] | None:
        n = self.workers
        if self.devices:
            devs = list(self.devices)
            n = max(n or 0, len(devs))
            return [devs[i % len(devs)] for i in range(n)] if n > 1 else None
        if n == 1:
            return None
        dev = (self.device or "").lower()
        if dev.startswith(("cpu", "mps")):
            return ["cpu"] * n if n else None
        import torch

        cuda = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
        if dev.startswith("cuda:") and cuda:
            cuda = [self.device]
        if n is None:  # auto: one process per visible CUDA device when there are several
            return cuda if len(cuda) > 1 and dev in ("", "cuda", "auto") else None
        return [cuda[i % len(cuda)] for i in range(n)] if cuda else ["cpu"] * n

    def start(self):
        if self.pool is None:
            targets = self.targets()
            n_cpu = sum(t == "cpu" for t in targets)
            threads = self.threads or max(1, cores() // max(1, n_cpu or len(targets)))
            self.model = load_encoder(self.encoder, "cpu")  # the pool moves its model to CPU shared memory
            log.info("encoding with %d processes on %s, %d torch threads each", len(targets), ", ".join(targets),
                     threads)
            self.pool = self.model.start_multi_process_pool([_WorkerDevice(t, threads) for t in targets])
        return self.model, self.pool

    def stop(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            self.model.stop_multi_process_pool(pool)


_pools: dict = {}  # encoder source -> PoolPlan active inside ``encoding_pool``


@contextlib.contextmanager
def encoding_pool(encoder: str | None = None, *, workers: int | None = None, devices: list[str] | None = None,
                  device: str | None = None, threads_per_worker: int | None = None):
    """Share one multi-process pool between every ``embed(..., encoder)`` call inside the block.

    The pool starts on the first call that has enough texts to encode (never when all are cached) and is
    stopped when the block exits, on errors and Ctrl-C too. ``workers``/``devices`` as in ``embed``; with
    neither, a pool is used only when several CUDA devices are visible. ``threads_per_worker``: torch
    threads of each worker (default: the cores this process may use / the CPU workers).
    """
    source = encoder_source(encoder)
    plan = PoolPlan(encoder, workers, devices, device, threads_per_worker)
    previous = _pools.get(source)
    _pools[source] = plan
    try:
        yield plan
    finally:
        if previous is None:
            _pools.pop(source, None)
        else:
            _pools[source] = previous
        plan.stop()


def choose_plan(encoder, workers: int | None, devices, device: str | None,
                n_missing: int) -> tuple[PoolPlan | None, PoolPlan | None]:
    """Who encodes ``n_missing`` texts: (the plan whose pool encodes them, None to encode in this process;
    the plan made for this call alone, which the caller stops when done, or None).

    The pool of an enclosing ``encoding_pool`` block is used once it runs or when there are at least
    ``POOL_MIN`` texts; ``workers=1`` always encodes in this process.
    """
    shared = _pools.get(encoder_source(encoder)) if workers != 1 else None
    own = None
    if shared is None and (workers not in (None, 1) or devices or n_missing >= POOL_MIN):
        shared = own = PoolPlan(encoder, workers, devices, device)
    plan = shared if shared is not None and (shared.pool is not None or n_missing >= POOL_MIN) else None
    if plan is not None and plan.targets() is None:
        plan = None
    return plan, own


__all__ = ["POOL_MIN", "PoolPlan", "choose_plan", "cores", "encoding_pool"]
