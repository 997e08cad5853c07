"""Vector helpers every stage shares (numpy only, so that the production loader can use them without torch).

Owns two small ideas:
  - ``l2_normalise``: rows scaled to unit length, the one L2 normalisation of the package (encoder outputs,
    baselines, the loader). ``precision`` is the dtype the norms and the division are computed in:
    float32 (the default) for encoder outputs and the baselines, so that cached embeddings, and every matrix
    trained on them, stay bit-identical to what earlier versions wrote; float64 in the loader, so that huge
    but finite float32 rows of a user's input do not overflow to inf and come out as zeros;
  - the ``normalize`` policy of a projection (``"both" | "query" | "none"``): which projected sides are
    L2-normalised, as ``projector.train.projection`` trains it, ``projector.train.export`` writes it and
    ``projector.loader`` applies it.

    from projector.formats.vectors import l2_normalise, normalises_queries
    z = l2_normalise(x)                          # (n, d) float32, zero rows stay zero
    z = l2_normalise(x, precision=np.float64)    # the loader's: huge finite rows do not overflow
"""
from __future__ import annotations

import numpy as np

NORMALIZE = ("both", "query", "none")  # which projected sides are L2-normalised; "both" measured best


def l2_normalise(x, eps: float = 1e-12, *, precision=np.float32) -> np.ndarray:
    """Rows of ``x`` (n, d) scaled to length 1 as float32 (rows shorter than ``eps`` are divided by ``eps``).

    ``precision``: np.float32 (norms and division in float32) or np.float64 (in float64, rounded to float32 at
    the end: no overflow for rows whose squared norm exceeds float32's range). The two differ in the last bit
    of about a third of the values, which is enough to move a trained model: keep each caller on the one it
    was trained with (tests/formats/test_vectors.py)."""
    x = np.asarray(x, dtype=np.float32)
    if np.dtype(precision) == np.float32:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)
    if np.dtype(precision) != np.float64:
        raise ValueError(f"precision must be np.float32 or np.float64, got {precision!r}")
    norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)  # (n, 1) float64: no overflow
    return (x / np.maximum(norms, eps)).astype(np.float32)


def normalises_queries(normalize: str) -> bool:
    """Whether the query side is L2-normalised after projection."""
    return normalize in ("both", "query")


def normalises_documents(normalize: str) -> bool:
    """Whether the document side is L2-normalised after projection (folding by M is exact only when not)."""
    return normalize == "both"
