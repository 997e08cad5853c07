"""The frozen encoder and its on-disk cache: texts in, L2-normalised vectors out, each text embedded once.

Rooms: ``embedding`` (``embed()``: cache look-up, encode the misses, write back), ``encoder`` (which model, its
identity), ``cache`` (the content-keyed store), ``npy``
(its memory-mapped ``.npy`` reads and streamed writes), ``pool`` (multi-process encoding).
"""
from projector.embed.embedding import embed

__all__ = ["embed"]
