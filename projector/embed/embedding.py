"""``embed``: texts to (n, d) float32 L2-normalised vectors with the frozen encoder, through the cache.

    from projector.embed.embedding import embed
    x = embed(["How do I open a file?"], template="query: {text}")   # (1, 384) float32, L2-normalised
    x = embed(texts, out="runs/x.npy")      # (n, d) written to disk in chunks, returned as a np.memmap
    x = embed(texts, workers=4)             # sentence-transformers' multi-process pool, 4 CPU processes

Only the texts the on-disk cache (``projector.embed.cache``: keyed by encoder identity, template and text) does not
hold are encoded, by the encoder of ``projector.embed.encoder``, in this process or with the pool of
``projector.embed.pool``; each chunk is cached as it finishes, so an interrupted run keeps what it encoded.

Scale: ``embed(..., out=path)`` writes the (n, d) result front to back into a ``.npy`` (temporary name,
renamed when complete, then a ``<out>.json`` sidecar with the fingerprint of the keys) and returns it
memory-mapped: peak memory is one chunk plus ~100 bytes a text (keys and index), not n x d x 4 bytes; the
same call again reuses the file. ``workers=N`` / ``devices=[...]`` (or more than one visible CUDA device)
encode the misses with sentence-transformers' own multi-process pool (not for fewer than ``POOL_MIN``
misses: starting workers takes seconds); ``with projector.embed.pool.encoding_pool(...)`` keeps one pool for many
calls.

This module imports only numpy at import time; torch and sentence-transformers load on first use.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from projector.embed.cache import MAX_SHARDS, NpyWriter, cache_keys, default_cache_dir, open_cache
from projector.embed.encoder import apply_template, encoder_dim, encoder_identity, load_encoder
from projector.embed.endpoint import is_endpoint
from projector.errors import DataError
from projector.files import write_bytes
from projector.embed.pool import choose_plan
from projector.formats.vectors import l2_normalise

_CHUNK = 4096  # texts encoded per cache shard (per worker with a pool): an interrupted run keeps what it finished
GATHER_ROWS = 4096  # rows read from the cache and written to the result per step: bounds memory with out=


class _Encoder:
    """Encodes lists of texts in-process or with a pool; owns (and stops) a pool it started itself."""

    def __init__(self, encoder, device, batch_size, show_progress, workers, devices, n_missing: int):
        self.encoder, self.device, self.batch_size, self.show = encoder, device, batch_size, show_progress
        self.endpoint = is_endpoint(encoder)  # requests, not a model here: no pool, each reply cached as it comes
        self.plan, self.own = (None, None) if self.endpoint else choose_plan(encoder, workers, devices, device,
                                                                            n_missing)
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
        return l2_normalise(vecs)

    def close(self) -> None:
        if self.own is not None:
            self.own.stop()


# ---- embed -------------------------------------------------------------------------------------------------

def _sidecar(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def _reuse_out(out: Path, fingerprint: str, n: int):
    """The finished ``out`` of an earlier identical call (same keys in the same order), memory-mapped."""
    try:
        meta = json.loads(_sidecar(out).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
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
    are visible; ``workers=1`` always encodes in this process. Under ``POOL_MIN`` misses no pool is started
    (unless an ``encoding_pool`` block already has one running).
    """
    texts = [str(t) for t in texts]
    identity = encoder_identity(encoder)
    keys = cache_keys(identity, template, texts)
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
    cache = None if cache_dir is False else open_cache(Path(cache_dir or default_cache_dir()), identity)
    enc = None
    fresh_keys, fresh = keys[:0], None  # cache_dir=False: this call's vectors, in RAM
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
                    if enc.endpoint and cache is not None and cache.dim not in (None, dim):
                        raise DataError(f"the endpoint gives {dim}-d vectors for {identity}, but the cache "
                                        f"{cache.dir} holds {cache.dim}-d ones: the server under that model name "
                                        "is another model; fix --encoder-base-url or --encoder (the cache is kept)")
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
    if enc.endpoint:
        return _request_missing(enc, todo_keys, todo_texts, cache)
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
        return keys[:0], None
    order = np.argsort(todo_keys)
    return todo_keys[order], np.concatenate(parts)[order]


def _request_missing(enc: _Encoder, todo_keys, todo_texts, cache):
    """``_encode_missing`` through an endpoint: every reply is cached as it arrives (a killed run re-sends only
    the requests in flight), merging shards as they pile up."""
    written = 0

    def put(idx: np.ndarray, vecs: np.ndarray) -> None:  # (m, d) for the texts at positions idx
        nonlocal written
        cache.put(todo_keys[idx], l2_normalise(vecs))
        written += 1
        if written % MAX_SHARDS == 0:
            cache.compact()

    vecs = enc.model().encode(todo_texts, show_progress_bar=enc.show, on_batch=put if cache is not None else None)
    if cache is not None:
        return todo_keys[:0], None
    order = np.argsort(todo_keys)
    return todo_keys[order], l2_normalise(vecs)[order]


def _assemble(cache, sid, row, fresh, shape, out):
    """The (n, d) result in RAM, or written to ``out`` chunk by chunk; ([], result) or (bad shards, None)."""
    n, d = shape
    result = None if out is not None else np.empty(shape, dtype=np.float32)
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(NpyWriter(out, shape)) if out is not None else None
        scratch = np.empty((min(n, GATHER_ROWS), d), dtype=np.float32) if result is None else None  # reused: no new pages
        for start in range(0, n, GATHER_ROWS):
            stop = min(n, start + GATHER_ROWS)
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


__all__ = ["embed"]
