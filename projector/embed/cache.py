"""The on-disk embedding cache: vectors stored by content, memory-mapped ``.npy`` shards, one folder per encoder.

Design (as in ``datasets``' fingerprinting): a vector is stored under ``sha256(encoder identity, template,
text)``, so the same text embedded by the same encoder with the same template is never embedded twice --
not across runs, not across models trained on the same pairs, not when the texts come in another order.
If the encoder cannot be identified (a local folder whose files changed), its identity changes and the
cache simply misses: recompute rather than reuse stale vectors.

    from projector.embed.cache import cache_keys, default_cache_dir, open_cache
    cache = open_cache(default_cache_dir(), identity)      # identity: projector.embed.encoder.encoder_identity(...)
    keys = cache_keys(identity, "query: {text}", texts)     # (n,) S16
    cache.put(keys, vectors)                                # (n, d) float32 -> a new shard
    sid, row = cache.lookup(keys)                           # shard id -1 where missing
    bad = cache.gather(sid, row, into)                      # copy the hits into an (n, d) array

Layout: ``$PROJECTOR_CACHE_DIR`` (default ``~/.cache/projector/embeddings``) / one folder per encoder
identity (``encoder.txt`` names it, ``meta.json`` records the dimension d) / ``shard-<hex>/`` folders, each
holding ``keys.npy`` (n, 16) uint8 digests and ``vectors.npy`` (n, d) float32, uncompressed, so the vectors
are memory-mapped (``np.load(path, mmap_mode="r")`` reads them too) and reading the cache never loads every
vector into RAM: only the 16-byte keys are held, in one sorted index. A shard is written into a temporary
folder and renamed into place when complete; nothing is pickled. Shards of the previous format
(``shard-<hex>.npz``, keys + vectors in one file) are converted on first sight. Past ``MAX_SHARDS`` shards,
``compact()`` merges the smallest (streamed, chunk by chunk). A shard that cannot be read, whose key and
vector counts differ, whose vectors have another dimension than ``meta.json`` (or the encoder, once loaded)
says, or (found when its vectors are read) that holds NaN/inf, is ignored with a warning naming it: its texts
are encoded again, and the next merge deletes it.

The ``.npy`` reads and writes are ``projector.embed.npy``'s; its streamed writer ``NpyWriter``, which
``embed(..., out=)`` uses, is handed on from here. It imports only numpy.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import mmap
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np

from projector.embed.npy import F32, InvalidNpy, NpyWriter, map_npy, read_blocks, release_pages, save_npy
from projector.files import write_bytes

log = logging.getLogger(__name__)

MAX_SHARDS = 32  # merge the smallest shards beyond this many, so a cache folder stays a few files
MERGE_ROWS = 4096  # rows read per step when shards are merged: bounds the merge's memory
_KEY = np.dtype("S16")


def default_cache_dir() -> Path:
    """``$PROJECTOR_CACHE_DIR``, else ``~/.cache/projector/embeddings``."""
    return Path(os.environ.get("PROJECTOR_CACHE_DIR") or Path.home() / ".cache" / "projector" / "embeddings")


def cache_keys(identity: str, template: str | None, texts: list[str]) -> np.ndarray:
    """(n,) ``S16`` cache keys: the first 16 bytes of sha256(identity \\0 template \\0 text)."""
    prefix = hashlib.sha256(f"{identity}\0{template or ''}\0".encode())
    out = bytearray(16 * len(texts))  # 16 bytes a text, not a bytes object each
    for i, t in enumerate(texts):
        h = prefix.copy()
        h.update(t.encode())
        out[16 * i:16 * i + 16] = h.digest()[:16]
    return np.frombuffer(out, dtype=_KEY)


_caches: dict = {}  # (root, identity) -> EmbeddingCache: a process reads each shard once, not once per embed() call


def open_cache(root, identity: str) -> "EmbeddingCache":
    """The cache of ``identity``'s vectors under ``root`` (its folder is created), up to date with the disk.

    Opened once per process and refreshed on each call: shards written since (by this or another process)
    are mapped, shards merged away by another process are dropped.
    """
    root = Path(root)
    key = (str(root.resolve()), identity)
    if key not in _caches or not _caches[key].dir.is_dir():
        _caches[key] = EmbeddingCache(root, identity)
    return _caches[key].refresh()


def clear_open_caches() -> None:
    """Forget the caches this process has open: the next ``open_cache`` reads its folder anew, as a new process
    would (shards already mapped are read again from disk)."""
    _caches.clear()


def _hi(keys: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each key as a big-endian uint64: sorted keys have sorted ``_hi``."""
    return keys.view(np.uint8).reshape(-1, 16)[:, :8].copy().view(">u8").ravel()


# ---- the cache ---------------------------------------------------------------------------------------------


class _Shard:
    __slots__ = ("name", "keys", "vectors", "mm")

    def __init__(self, name: str, keys: np.ndarray, vectors: np.ndarray, mm: mmap.mmap | None):
        self.name, self.keys, self.vectors, self.mm = name, keys, vectors, mm


class EmbeddingCache:
    """Shards of (key, vector) for one encoder identity: keys in RAM (one sorted index), vectors mapped.

    Get one with ``open_cache``; ``lookup``/``gather`` read, ``put`` adds a shard, ``compact`` merges."""

    def __init__(self, root: Path, identity: str):
        self.dir = root / hashlib.sha256(identity.encode()).hexdigest()[:16]
        self.dir.mkdir(parents=True, exist_ok=True)
        self.identity = identity
        info = self.dir / "encoder.txt"  # human-readable: which encoder this folder belongs to
        if not info.exists():
            write_bytes(info, (identity + "\n").encode())
        meta = _read_json(self.dir / "meta.json")
        self.dim: int | None = meta.get("dim") if isinstance(meta, dict) and isinstance(meta.get("dim"), int) else None
        self.shards: list[_Shard | None] = []  # append-only: a shard's position is its id in the index
        self.by_name: dict[str, int] = {}
        self.ignored: set[str] = set()  # names found invalid (warned once per process)
        self.unconverted: set[str] = set()  # old .npz shards that could not be rewritten: read whole
        self._index = None  # (sorted keys, their _hi, shard id, row), rebuilt lazily after changes
        self._clean_temps()
        self.refresh()

    def __len__(self) -> int:
        """The distinct keys (texts) the cache holds."""
        return len(self._build_index()[0])

    # -- reading --
    def refresh(self) -> "EmbeddingCache":
        """Convert old ``.npz`` shards, map shards written since the last look (by this or another process)."""
        for npz in sorted(self.dir.glob("shard-*.npz")):
            if npz.name not in self.ignored and npz.name not in self.unconverted:
                self._migrate(npz)
        on_disk = {p.name for p in self.dir.glob("shard-*") if p.is_dir()}
        for name, sid in list(self.by_name.items()):
            if name not in on_disk and name not in self.unconverted:  # merged away by another process
                self._drop(sid)
        found = []
        for name in sorted(on_disk - set(self.by_name) - self.ignored):
            try:
                keys = np.load(self.dir / name / "keys.npy", allow_pickle=False)
                vectors, mm = map_npy(self.dir / name / "vectors.npy")
            except FileNotFoundError:  # merged away while we looked, or a folder being deleted
                continue
            except (InvalidNpy, OSError, ValueError) as e:
                self._ignore(name, f"unreadable ({e})")
                continue
            found.append((name, keys, vectors, mm))
        if self.dim is None and found:  # an old cache without meta.json: the dimension most vectors have
            dims: dict[int, int] = {}
            for _, _, v, _ in found:
                dims[v.shape[1]] = dims.get(v.shape[1], 0) + len(v)
            self._set_dim(max(dims, key=dims.get))
        for name, keys, vectors, mm in found:
            problem = self._check(keys, vectors)
            if problem:
                self._ignore(name, problem)
            else:
                self._register(_Shard(name, _as_keys(keys), vectors, mm))
        return self

    def _check(self, keys: np.ndarray, vectors: np.ndarray) -> str | None:
        if keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape[1] != 16:
            return f"keys are {keys.dtype} {keys.shape}, not (n, 16) uint8"
        if vectors.ndim != 2 or len(keys) != len(vectors):
            return f"{len(keys)} keys but {len(vectors)} vectors"
        if self.dim is not None and vectors.shape[1] != self.dim:
            return f"vectors have dimension {vectors.shape[1]}, this encoder's is {self.dim}"
        return None

    def _ignore(self, name: str, why: str) -> None:
        self.ignored.add(name)
        log.warning("ignoring embedding cache shard %s: %s; its texts are encoded again", self.dir / name, why)

    def _migrate(self, npz: Path) -> None:
        """Rewrite a ``shard-<hex>.npz`` of the previous format as a shard folder (same name), then delete it."""
        try:
            with np.load(npz, allow_pickle=False) as z:
                keys, vectors = z["keys"], z["vectors"]
        except FileNotFoundError:
            return
        except Exception as e:  # torn or foreign: ignore (its vectors are recomputed)
            self._ignore(npz.name, f"unreadable ({type(e).__name__}: {e})")
            return
        if self.dim is None and vectors.ndim == 2:
            self._set_dim(vectors.shape[1])
        problem = self._check(keys, vectors) or (None if np.isfinite(vectors).all() else "NaN/inf vectors")
        if problem:
            self._ignore(npz.name, problem)
            return
        name = npz.name[:-len(".npz")]
        try:
            if not (self.dir / name).exists():
                self._write_shard(name, keys, vectors.astype(F32, copy=False))
            npz.unlink(missing_ok=True)
        except OSError as e:  # a read-only cache: use the old shard from memory
            log.warning("cannot convert embedding cache shard %s (%s); reading it whole", npz, e)
            self.unconverted.add(npz.name)
            self._register(_Shard(npz.name, _as_keys(keys), vectors.astype(F32, copy=False), None))

    def _register(self, shard: _Shard) -> int:
        self.shards.append(shard)
        self.by_name[shard.name] = len(self.shards) - 1
        self._index = None
        return len(self.shards) - 1

    def _drop(self, sid: int) -> None:
        shard = self.shards[sid]
        if shard is not None:
            self.by_name.pop(shard.name, None)
            self.shards[sid] = None
            self._index = None

    def _build_index(self):
        if self._index is None:
            live = [(i, s) for i, s in enumerate(self.shards) if s is not None and len(s.keys)]
            if not live:
                keys = np.empty(0, dtype=_KEY)
                self._index = (keys, _hi(keys), np.empty(0, np.int32), np.empty(0, np.int64))
                return self._index
            keys = np.concatenate([s.keys for _, s in live])  # ~60 bytes a key at the peak, 36 kept
            order = np.argsort(keys, kind="stable")
            keys = keys[order]
            sid = np.concatenate([np.full(len(s.keys), i, dtype=np.int32) for i, s in live])[order]
            row = np.concatenate([np.arange(len(s.keys), dtype=np.int64) for _, s in live])[order]
            del order
            last = np.ones(len(keys), dtype=bool)  # a key in several shards: keep one (the newest registered)
            last[:-1] = keys[1:] != keys[:-1]
            if not last.all():
                keys, sid, row = keys[last], sid[last], row[last]
            self._index = (keys, _hi(keys), sid, row)
        return self._index

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(shard id, row) of each key; shard id -1 where the cache does not have it."""
        ikeys, ihi, isid, irow = self._build_index()
        sid = np.full(len(keys), -1, dtype=np.int32)
        row = np.zeros(len(keys), dtype=np.int64)
        if not len(ikeys) or not len(keys):
            return sid, row
        qhi = _hi(keys)
        pos = np.minimum(np.searchsorted(ihi, qhi), len(ikeys) - 1)  # uint64 search: ~10x faster than on S16
        hit = ikeys[pos] == keys
        clash = ~hit & (ihi[pos] == qhi)  # same first 8 bytes, another key: search on all 16 (rare)
        if clash.any():
            p2 = np.minimum(np.searchsorted(ikeys, keys[clash]), len(ikeys) - 1)
            pos[clash] = p2
            hit[clash] = ikeys[p2] == keys[clash]
        sid[hit], row[hit] = isid[pos[hit]], irow[pos[hit]]
        return sid, row

    def gather(self, sid: np.ndarray, row: np.ndarray, into: np.ndarray) -> list[int]:
        """Copy cached vectors into ``into`` (rows with sid >= 0); return the shards that gave NaN/inf."""
        bad = []
        for s in np.unique(sid[sid >= 0]):
            idx = np.flatnonzero(sid == s)
            order = np.argsort(row[idx], kind="stable")  # read the file front to back
            idx, rows, shard, finite = idx[order], row[idx][order], self.shards[s], True
            for a, b in read_blocks(rows, into.shape[1]):
                block = shard.vectors[rows[a:b]]
                release_pages(shard.mm)
                finite = finite and bool(np.isfinite(block).all())
                into[idx[a:b]] = block
            if not finite:
                bad.append(int(s))
        return bad

    def reject(self, sid: int, why: str) -> None:
        self._ignore(self.shards[sid].name, why)
        self._drop(sid)

    # -- writing --
    def _set_dim(self, d: int) -> None:
        self.dim = int(d)
        with contextlib.suppress(OSError):
            meta = {"encoder": self.identity, "dim": self.dim}
            write_bytes(self.dir / "meta.json", (json.dumps(meta) + "\n").encode())

    def expect_dim(self, d: int) -> bool:
        """The encoder's dimension is ``d``: drop shards of another one (True if any were in use)."""
        if self.dim == d:
            return False
        if self.dim is not None:
            log.warning("embedding cache %s recorded dimension %s, but the encoder gives %d", self.dir, self.dim, d)
        self._set_dim(d)
        changed = False
        for sid, s in enumerate(self.shards):
            if s is not None and s.vectors.shape[1] != d:
                self.reject(sid, f"vectors have dimension {s.vectors.shape[1]}, this encoder's is {d}")
                changed = True
        return changed

    def _write_shard(self, name: str, keys: np.ndarray, vectors: np.ndarray | None = None, chunks=None) -> None:
        """Write ``<name>/keys.npy`` and ``vectors.npy`` into a temporary folder, then rename it into place."""
        tmp = self.dir / f".tmp-{name}-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            save_npy(tmp / "keys.npy", np.ascontiguousarray(keys, dtype=np.uint8))
            if vectors is not None:
                save_npy(tmp / "vectors.npy", np.ascontiguousarray(vectors, dtype=F32))
            else:
                with NpyWriter(tmp / "vectors.npy", (len(keys), self.dim)) as w:
                    for c in chunks:
                        w.write(c)
                    w.commit()
            os.rename(tmp, self.dir / name)  # atomic; fails if the name exists (then another process won)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def put(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Store freshly encoded vectors (keys: (m,) S16) as a new shard."""
        if self.dim is None:
            self._set_dim(vectors.shape[1])
        name = f"shard-{uuid.uuid4().hex}"
        k = keys.view(np.uint8).reshape(len(keys), 16)
        self._write_shard(name, k, vectors)
        vectors_mapped, mm = map_npy(self.dir / name / "vectors.npy")  # not the RAM copy: memory stays bounded
        self._register(_Shard(name, keys.copy(), vectors_mapped, mm))

    def compact(self) -> None:
        """Past ``MAX_SHARDS`` shards, merge the smallest into one (streamed), delete them and ignored ones."""
        live = [(sid, s) for sid, s in enumerate(self.shards) if s is not None]
        if len(live) <= MAX_SHARDS:
            return
        victims = [sid for sid, s in sorted(live, key=lambda x: len(x[1].keys))[:len(live) - MAX_SHARDS // 2]]
        ikeys, _, isid, irow = self._build_index()
        sel = np.isin(isid, victims)
        keys, sid, row = ikeys[sel], isid[sel], irow[sel]

        bad: list[int] = []

        def chunks():
            for start in range(0, len(keys), MERGE_ROWS):
                buf = np.empty((min(MERGE_ROWS, len(keys) - start), self.dim), dtype=F32)
                bad.extend(self.gather(sid[start:start + MERGE_ROWS], row[start:start + MERGE_ROWS], buf))
                if bad:
                    raise InvalidNpy("NaN/inf vectors")
                yield buf

        name = f"shard-{uuid.uuid4().hex}"
        try:
            self._write_shard(name, keys.view(np.uint8).reshape(-1, 16), chunks=chunks())
        except InvalidNpy:  # never merge bad vectors into a good shard: drop those, merge next time
            for s in bad:
                self.reject(s, "NaN/inf vectors")
            return
        vectors, mm = map_npy(self.dir / name / "vectors.npy")
        self._register(_Shard(name, keys.copy(), vectors, mm))
        for v in victims:
            old = self.shards[v].name
            self._drop(v)
            _remove(self.dir / old)
        for name in self.ignored:  # invalid shards: nothing in them is used
            _remove(self.dir / name)
        self.ignored.clear()

    def _clean_temps(self) -> None:
        """Temporary folders/files left by killed writers (older than a day: never one being written)."""
        for p in self.dir.glob(".*tmp*"):
            with contextlib.suppress(OSError):
                if time.time() - p.stat().st_mtime > 86400:
                    shutil.rmtree(p) if p.is_dir() else p.unlink()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _as_keys(keys: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(keys, dtype=np.uint8).view(_KEY).ravel()


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


__all__ = ["default_cache_dir", "cache_keys", "open_cache", "clear_open_caches", "EmbeddingCache", "NpyWriter",
           "MAX_SHARDS", "MERGE_ROWS"]
