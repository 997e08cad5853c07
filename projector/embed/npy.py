"""``.npy`` files as the embedding cache and ``embed(..., out=)`` use them: memory-mapped reads, streamed atomic writes.

    vectors, mm = map_npy(path)            # (n, d) float32, read-only, never loaded whole into RAM
    for a, b in read_blocks(rows, d):      # sorted rows, read a few 2 MiB windows at a time ...
        block = vectors[rows[a:b]]; release_pages(mm)                # ... then the mapped pages are let go
    with NpyWriter(path, (n, d)) as w:     # written front to back under a temporary name,
        w.write(chunk); w.commit()         # renamed into place when complete

Only C-order (n, d) little-endian float32 arrays; a file that is anything else raises ``InvalidNpy`` with the
reason. Nothing is pickled. It imports only numpy.
"""
from __future__ import annotations

import contextlib
import mmap
import os
import uuid
from pathlib import Path

import numpy as np

WINDOWS = 8  # 2 MiB windows of a mapped file read between releases of the mapping (see read_blocks)
F32 = np.dtype("<f4")

_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


class InvalidNpy(Exception):
    """A file that is not what this module writes, or vectors that must not be kept (the message says why)."""


def map_npy(path: Path) -> tuple[np.ndarray, mmap.mmap | None]:
    """A C-order (n, d) float32 ``.npy``, memory-mapped read-only; checks header, dtype and file size."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                raise InvalidNpy(f"unknown .npy version {version}")
            shape, fortran, dtype = read[version](f)
        except ValueError as e:
            raise InvalidNpy(f"not a .npy file ({e})") from None
        if dtype != F32 or fortran or len(shape) != 2:
            raise InvalidNpy(f"holds a {dtype} array of shape {shape}, not C-order (n, d) float32")
        offset, (n, d) = f.tell(), shape
        size = os.fstat(f.fileno()).st_size
        if size != offset + 4 * n * d:
            raise InvalidNpy(f"is {size} bytes, its header says {offset + 4 * n * d} (torn or truncated)")
        if n * d == 0:
            return np.zeros((n, d), dtype=np.float32), None
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return np.frombuffer(mm, dtype=F32, count=n * d, offset=offset).reshape(n, d), mm


def release_pages(mm: mmap.mmap | None) -> None:
    """Unmap the pages of ``mm`` this process touched (they stay in the page cache): resident memory drops."""
    if mm is not None and _DONTNEED is not None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            mm.madvise(_DONTNEED)


class NpyWriter:
    """A (n, d) float32 ``.npy`` written front to back in chunks under a temporary name, renamed when complete.

    Sequential writes go to the page cache, not to this process's memory, so peak RSS is one chunk.
    """

    def __init__(self, path: Path, shape: tuple[int, int]):
        self.path, self.shape, self.rows = Path(path), (int(shape[0]), int(shape[1])), 0
        self.tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        self.f = open(self.tmp, "wb")
        np.lib.format.write_array_header_1_0(self.f, {"descr": "<f4", "fortran_order": False, "shape": self.shape})

    def write(self, chunk: np.ndarray) -> None:
        chunk = np.ascontiguousarray(chunk, dtype=F32)
        assert chunk.ndim == 2 and chunk.shape[1] == self.shape[1], (chunk.shape, self.shape)
        self.f.write(memoryview(chunk).cast("B"))
        self.rows += len(chunk)

    def commit(self) -> None:
        if self.rows != self.shape[0]:
            raise RuntimeError(f"{self.path}: wrote {self.rows} rows of {self.shape[0]}")
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.path)

    def __enter__(self) -> "NpyWriter":
        return self

    def __exit__(self, *exc) -> None:
        if not self.f.closed:
            self.f.close()
        self.tmp.unlink(missing_ok=True)


def save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` without pickles, synced to disk (the caller renames its folder into place)."""
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def read_blocks(rows: np.ndarray, d: int) -> list[tuple[int, int]]:
    """Split sorted row numbers into runs that fall in at most ``WINDOWS`` 2 MiB windows of the file.

    Reading one row maps far more than the row (fault-around, large page-cache folios: ~1-2 MiB here), so
    the mapping is released after each run: a run of neighbouring rows is one read, scattered rows are read
    a few at a time, and either way the mapped memory stays near ``WINDOWS`` x 2 MiB.
    """
    window = (rows * (4 * d)) >> 21
    if not len(window):
        return []
    new = np.empty(len(window), dtype=bool)
    new[0], new[1:] = True, window[1:] != window[:-1]
    block = (np.cumsum(new) - 1) // WINDOWS
    cuts = np.flatnonzero(np.diff(block)) + 1
    edges = [0, *cuts.tolist(), len(rows)]
    return list(zip(edges[:-1], edges[1:]))
