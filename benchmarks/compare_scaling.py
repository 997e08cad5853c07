"""``python benchmarks/compare.py --scaling``: projector's training throughput on synthetic pairs (CPU).

    rows = scaling([10_000, 100_000], threads=1, processes=2)   # one epoch each, under torchrun when processes > 1
    print(scaling_markdown(rows))                              # pairs/s of the training steps, peak RSS

Each size runs as a ``scaling`` child (``compare_children``): one epoch of ``projector.train.fit`` on n random
unit-vector pairs of dimension d, the wall time with and without the validation ``fit`` does every epoch.
"""
from __future__ import annotations

import time

from siblings import load  # benchmarks/ is on sys.path: compare.py put it there

load("compare_children")  # as benchmarks_compare_children
from benchmarks_compare_children import CHILDREN, run_child  # noqa: E402


def child_scaling(spec: dict) -> dict:
    """One epoch of projector's training loop on n synthetic pairs (CPU): pairs/s and peak memory."""
    import torch

    from projector.train.projection import Projection
    from projector.train.distributed import init_distributed
    from projector.train.fit import fit, validate
    from projector.train.inputs import Data, Split
    from projector.train.stage import TrainConfig

    n, d = spec["n"], spec["dim"]
    g = torch.Generator().manual_seed(0)
    corpus = torch.nn.functional.normalize(torch.randn(max(n // 2, 1000), d, generator=g), dim=1)  # (N, d)
    pos = torch.randint(len(corpus), (n,), generator=g)                                          # (n,)
    q = torch.nn.functional.normalize(corpus[pos] + 0.5 * torch.randn(n, d, generator=g), dim=1)   # (n, d)
    vpos = torch.arange(512)
    vq = torch.nn.functional.normalize(corpus[vpos] + 0.5 * torch.randn(512, d, generator=g), dim=1)
    val = Split(vq, corpus[:2000], [{int(i)} for i in vpos], pos=vpos)
    data = Data(corpus, q, pos, None, None, val)
    cfg = TrainConfig(pairs="-", out="-", epochs=spec["epochs"], patience=spec["epochs"], device="cpu")
    model = Projection(d, d, "asymmetric")
    ddp = init_distributed("cpu")  # under torchrun: every rank holds the data, each trains its share of a batch
    started = time.time()
    fit(model, data, cfg, None, ddp=ddp)
    wall = time.time() - started
    started = time.time()
    validate(model, data, cfg.batch_size)   # what fit spends per epoch outside the training steps
    steps = max(wall - spec["epochs"] * (time.time() - started), 1e-9)
    return {"n": n, "epochs": spec["epochs"], "wall_s": round(wall, 2), "steps_s": round(steps, 2),
            "pairs_per_s": round(n * spec["epochs"] / steps, 1)}


CHILDREN["scaling"] = child_scaling   # a child process finds it: compare.py loads this module


def scaling(sizes=(10_000, 100_000, 1_000_000), threads: int = 1, dim: int = 384, epochs: int = 1,
            processes: int = 1) -> list[dict]:
    """``threads`` per process; ``processes`` > 1 trains under torchrun (gloo), each rank holding the data."""
    rows = []
    for n in sizes:
        r = run_child("scaling", {"n": n, "dim": dim, "epochs": epochs}, threads, processes)
        rows.append(r if "error" in r else {**r, "threads": threads, "processes": processes})
        print(f"scaling n={n} processes={processes} threads={threads}: {r}", flush=True)
    return rows


def scaling_markdown(rows: list[dict]) -> str:
    lines = ["## projector training throughput, synthetic embeddings (d=384, asymmetric k=d, batch 256, CPU)", "",
             "| pairs | processes × threads | epochs | wall s (fit, incl. validation) | training steps s | "
             "pairs/s (steps) | peak RSS MB (all processes) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| – | – | – | – | – | – | {r['error']} |")
        else:
            lines.append(f"| {r['n']:,} | {r.get('processes', 1)} × {r.get('threads', 1)} | {r['epochs']} | "
                         f"{r['wall_s']} | {r['steps_s']} | {r['pairs_per_s']:,.0f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines) + "\n"
