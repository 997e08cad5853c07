"""Peak memory of projector.embed.embedding.embed() on a large cached set: the result in RAM against ``out=`` (memmap).

    python benchmarks/embed_memory.py                 # 500,000 cached vectors, d = 384
    python benchmarks/embed_memory.py --n 1000000 --keep-dir /tmp/embcache

A synthetic cache (random unit vectors under the keys of "synthetic text <i>", for an encoder identity that
is never loaded) is written through the cache's own API; then each setting runs embed() over all n texts in
a fresh child process and reports that child's peak resident set (VmHWM from /proc/self/status, which counts
file-backed pages too), with the child's baseline (Python, numpy, the n texts) measured the same way.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
IDENTITY = "synthetic-encoder"


def texts(n: int) -> list[str]:
    return [f"synthetic text {i}" for i in range(n)]


def status_mib(*fields: str) -> dict:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in fields:
            out[name] = int(value.split()[0]) / 1024
    return out


def child(mode: str, root: str, n: int, out_dir: str, shuffle: str) -> None:
    import numpy as np

    from projector.embed.embedding import embed

    t_list = texts(n)
    if shuffle == "1":  # another order than the cache's: each chunk of the result reads rows all over the shards
        t_list = [t_list[i] for i in np.random.default_rng(1).permutation(n)]
    t = time.perf_counter()
    if mode == "baseline":
        x = np.zeros((0, 0))
    elif mode == "in-memory":
        x = embed(t_list, IDENTITY, cache_dir=root, show_progress=False)
    else:  # "out" and "out, reused" (second call: the finished file is found)
        x = embed(t_list, IDENTITY, cache_dir=root, show_progress=False, out=Path(out_dir) / "x.npy")
    seconds = time.perf_counter() - t
    mem = status_mib("VmHWM", "VmRSS", "RssAnon", "RssFile")
    print(json.dumps({"mode": mode, "seconds": seconds, "shape": list(x.shape), "type": type(x).__name__, **mem}))


def build(root: Path, n: int, d: int, chunk: int = 65536) -> float:
    import numpy as np

    from projector.embed.cache import cache_keys, open_cache

    t = time.perf_counter()
    cache = open_cache(root, IDENTITY)
    rng = np.random.default_rng(0)
    all_texts = texts(n)
    for start in range(0, n, chunk):
        part = all_texts[start:start + chunk]
        v = rng.standard_normal((len(part), d), dtype=np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        cache.put(cache_keys(IDENTITY, None, part), v)
    return time.perf_counter() - t


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--keep-dir", help="build the cache here and keep it (default: a temp dir, deleted)")
    ap.add_argument("--in-cache-order", action="store_true",
                    help="ask for the texts in the order they were cached (default: shuffled, the harder case)")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        mode, root, n, out_dir, shuffle = args.child
        return child(mode, root, int(n), out_dir, shuffle)

    work = Path(args.keep_dir or tempfile.mkdtemp(prefix="embed-memory-"))
    root, out_dir = work / "cache", work / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        if not any(root.rglob("vectors.npy")):
            print(f"building a cache of {args.n:,} vectors, d={args.dim} ...", flush=True)
            print(f"  {build(root, args.n, args.dim):.1f} s", flush=True)
        size = sum(p.stat().st_size for p in root.rglob("*.npy")) / 2**20
        print(f"cache: {size:,.0f} MiB on disk; n x d x 4 = {args.n * args.dim * 4 / 2**20:,.0f} MiB; "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        (out_dir / "x.npy").unlink(missing_ok=True)
        rows = []
        for mode in ("baseline", "in-memory", "out", "out, reused"):
            r = subprocess.run([sys.executable, __file__, "--child", mode, str(root), str(args.n), str(out_dir),
                                str(int(not args.in_cache_order))],
                               capture_output=True, text=True, check=True, cwd=REPO)
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
        base = rows[0]["VmHWM"]
        print(f"\n{'embed() of n cached texts':<28}{'peak RSS MiB':>14}{'minus baseline':>16}{'seconds':>10}  returns")
        for r in rows:
            what = "-" if r["mode"] == "baseline" else f"{r['type']} {tuple(r['shape'])}"
            print(f"{r['mode']:<28}{r['VmHWM']:>14,.0f}{r['VmHWM'] - base:>16,.0f}{r['seconds']:>10.2f}  {what}")
    finally:
        if not args.keep_dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
