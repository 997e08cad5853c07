"""Vector helpers every stage shares (numpy only, so that the production loader can use them without torch).

Owns two small ideas:
  - ``l2_normalise``: rows scaled to unit length, the one L2 normalisation of the package (encoder outputs,
    baselines, the loader), with norms accumulated in float64 so that huge but finite float32 rows do not
    overflow to inf and come out as zeros;
  - the ``normalize`` policy of a projection (``"both" | "query" | "none"``): which projected sides are
    L2-normalised, as ``projector.projection`` trains it, ``projector.export`` writes it and
    ``projector.loader`` applies it.

    from projector.vectors import l2_normalise, normalises_queries
    z = l2_normalise(x)                          # (n, d) float32, zero rows stay zero
"""
from __future__ import annotations

import numpy as np

NORMALIZE = ("both", "query", "none")  # which projected sides are L2-normalised; "both" measured best


def l2_normalise(x, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` (n, d) scaled to length 1 as float32 (rows shorter than ``eps`` are divided by ``eps``)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))[:, None]  # (n, 1) float64: no overflow
    out = np.empty_like(x)
    np.divide(x, np.maximum(norms, eps), out=out, casting="unsafe")  # float64 division, float32 result
    return out


def normalises_queries(normalize: str) -> bool:
    """Whether the query side is L2-normalised after projection."""
    return normalize in ("both", "query")


def normalises_documents(normalize: str) -> bool:
    """Whether the document side is L2-normalised after projection (folding by M is exact only when not)."""
    return normalize == "both"
