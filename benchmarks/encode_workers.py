"""Encoding throughput: one process against sentence-transformers' multi-process pool (projector.embed.pool).

    python benchmarks/encode_workers.py                       # 1 vs 2 workers, 1,000 short texts, 300 passages
    python benchmarks/encode_workers.py --workers 1,2,4 --oversubscribed

Short texts are the sentences of the bundled corpus (data/python-reference.jsonl), passages the first
passages of benchmarks/pairs/faq-perl-debian/passages.jsonl (median ~120 words). Nothing is cached
(``cache_dir=False``). Each pool is started once and timed apart (spawning workers that import torch and
receive the model), then warmed up; texts/s is the steady state, best of ``--repeat`` runs.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def short_texts(n: int) -> list[str]:
    out = []
    for line in (REPO / "data" / "python-reference.jsonl").read_text(encoding="utf-8").splitlines():
        for s in re.split(r"(?<=[.?!])\s+", json.loads(line)["text"]):
            s = " ".join(s.split())
            if 20 <= len(s) <= 200 and s not in out:
                out.append(s)
                if len(out) == n:
                    return out
    return out


def passages(n: int) -> list[str]:
    from projector.formats.pairs import read_passages

    return [p.text for p in read_passages(REPO / "benchmarks" / "pairs" / "faq-perl-debian" / "passages.jsonl")[:n]]


def rate(fn, texts, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        x = fn(texts)
        best = min(best, time.perf_counter() - t)
        assert x.shape[0] == len(texts)
    return len(texts) / best


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", type=int, default=1000)
    ap.add_argument("--passages", type=int, default=300)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts (1 = in-process)")
    ap.add_argument("--oversubscribed", action="store_true",
                    help="also run each pool with torch's default threads (all cores per worker)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from projector.embed.embedding import embed
    from projector.embed.pool import cores as usable_cores, encoding_pool

    cores = usable_cores()
    short, long_ = short_texts(args.short), passages(args.passages)
    print(f"{len(short)} short texts (mean {np.mean([len(t) for t in short]):.0f} chars), {len(long_)} passages "
          f"(mean {np.mean([len(t) for t in long_]):.0f} chars); {cores} cores, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    settings = []
    for w in (int(x) for x in args.workers.split(",")):
        if w == 1:
            settings.append((1, torch.get_num_threads()))
        else:
            settings.append((w, max(1, cores // w)))
            if args.oversubscribed and cores // w != cores:
                settings.append((w, cores))
    rows, reference = [], None
    kw = {"cache_dir": False, "show_progress": False, "batch_size": args.batch_size}
    for workers, threads in settings:
        label = f"{workers} process, {threads} threads" if workers == 1 else f"{workers} workers x {threads} threads"
        if workers == 1:
            fn = functools.partial(embed, workers=1, **kw)
            fn(short[:64])  # warm-up (loads the model)
            rows.append((label, 0.0, rate(fn, short, args.repeat), rate(fn, long_, args.repeat)))
            reference = fn(short[:64])
        else:
            fn = functools.partial(embed, **kw)  # the block's pool encodes
            with encoding_pool(None, workers=workers, device="cpu", threads_per_worker=threads) as plan:
                t = time.perf_counter()
                plan.start()
                x = fn(short[:64])  # warm-up: the first chunks wait for the workers to load
                start_s = time.perf_counter() - t
                rows.append((label, start_s, rate(fn, short, args.repeat), rate(fn, long_, args.repeat)))
            if reference is not None:
                assert np.abs(x - reference).max() < 1e-5, "pool and in-process vectors differ"
        print(f"  done: {label}  (load average {os.getloadavg()[0]:.2f})", flush=True)
    print(f"\n{'setting':<28}{'pool start + warm-up s':>24}{'short texts/s':>16}{'passages/s':>12}")
    for label, start_s, r_short, r_long in rows:
        print(f"{label:<28}{start_s:>24.1f}{r_short:>16.1f}{r_long:>12.1f}")
    print(f"load average after: {os.getloadavg()[0]:.2f} (1 min) on {cores} cores")


if __name__ == "__main__":
    main()
