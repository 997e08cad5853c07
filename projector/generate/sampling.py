"""Which passages (items) get LLM requests when not all do: ``generate --max-passages N --sample uniform|cover``.

Both samples only grow: the N chosen first stay chosen when N grows, so a run extends without losing what it
made. ``uniform`` ranks items by a seeded hash of their id and takes the first N. ``cover`` orders them so that
every prefix covers the corpus under the frozen encoder: level by level, k-means with 1, 2, 4, 8, ... clusters
(scikit-learn, seeded per level), and at each level the passage nearest each centroid, largest clusters first,
skipping passages an earlier level already chose. A prefix of N thus holds the representatives of every
resolution coarser than about N clusters, and then those of the biggest clusters of the next one. Computing
the order costs k-means up to about 2N clusters, so it is done once per run folder and kept there
(``sample.json``); a larger N later extends the kept order (what was chosen stays first).

    from projector.generate.sampling import uniform, cover_order
    chosen = uniform(passages, 60, seed=0)
    rows = cover_order(vectors, 60, seed=0)     # vectors (n, d) L2-normalised -> 60 row indices
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from projector.files import read_json, write_json

SAMPLES = ("uniform", "cover")
MAX_ITER = 50  # Lloyd iterations per level: representatives need a good partition, not a converged one
STATE = "sample.json"  # the cover order of a run, in its --out folder


def uniform(items, k: int | None, seed: int, salt: str = "sample"):
    """A seeded sample that only grows with k: the 60 chosen first stay chosen when you ask for 200."""
    # Salted differently from generate's split, so that the sample is not all of one split (and per use).
    ranked = sorted(items, key=lambda p: hashlib.sha256(f"{salt}:{seed}:{p.passage_id}".encode()).hexdigest())
    return ranked if k is None else ranked[:k]


def cover_order(vectors: np.ndarray, k: int, seed: int) -> list[int]:
    """The first ``k`` row indices of the cover order of ``vectors`` (n, d) (see the module docstring)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import pairwise_distances_argmin
    from threadpoolctl import threadpool_limits

    n = len(vectors)
    k = min(k, n)
    order: list[int] = []
    seen: set[int] = set()
    level = 0
    # One thread: k-means' parallel reduction sums in a varying order, and a last-bit difference can move a
    # centroid's nearest passage; the order must be the same on every run for the sample to only grow.
    with threadpool_limits(1):
        while len(order) < k:
            c = 2 ** level
            if c >= n:  # finer than the corpus: every passage is its own cluster
                order += [i for i in range(n) if i not in seen]
                break
            km = KMeans(n_clusters=c, n_init=1, max_iter=MAX_ITER,
                        random_state=int(np.random.SeedSequence([seed, level]).generate_state(1)[0])).fit(vectors)
            nearest = pairwise_distances_argmin(km.cluster_centers_, vectors)  # (c,) a passage per centroid
            sizes = np.bincount(km.labels_, minlength=c)  # (c,)
            for j in sorted(range(c), key=lambda j: (-sizes[j], j)):
                if int(nearest[j]) not in seen:
                    seen.add(int(nearest[j]))
                    order.append(int(nearest[j]))
            level += 1
    return order[:k]


def cover(passages, k: int | None, seed: int, embed_texts, out: Path | None = None):
    """``k`` passages in cover order; ``embed_texts(texts) -> (n, d)`` is called only when the order kept in
    ``out/sample.json`` is shorter than ``k``. None: every passage (uniform order, nothing embedded)."""
    if k is None or k >= len(passages):
        return uniform(passages, None, seed)
    by_id = {p.passage_id: p for p in passages}
    state = read_json(out / STATE) if out is not None else None
    kept = [i for i in (state or {}).get("order", []) if i in by_id] if (state or {}).get("seed") == seed else []
    if len(kept) < k:
        rows = cover_order(np.asarray(embed_texts([p.text for p in passages])), k, seed)
        fresh = [passages[i].passage_id for i in rows]
        have = set(kept)
        kept += [i for i in fresh if i not in have]
        if out is not None:
            write_json(out / STATE, {"sample": "cover", "seed": seed, "order": kept})
    return [by_id[i] for i in kept[:k]]
