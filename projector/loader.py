"""Production loader for a trained projection folder: numpy + safetensors only.

    import projector
    p = projector.load("runs/quickstart/model")
    zq = p.project_queries(query_vectors)         # (nq, k) from your own (nq, d) encoder vectors: no torch
    zd = p.project_documents(doc_vectors)          # (nd, k)
    p.score(query_vectors, doc_vectors)            # (nq, nd) logits;  p.probability(...) = sigmoid(logits)
    p.encode_queries(["how do I ...?"])            # loads the recorded encoder (torch) and applies the template

Projecting precomputed embeddings imports neither torch nor sentence-transformers. Loading checks the
format version, the type and range of every field it uses (the schema: ``projector.formats.artifact``), the file
checksum, every tensor's shape, dtype and finiteness, and the encoder: ``load(path, encoder=...)`` with
another encoder than the one recorded is an ArtifactError, not silently wrong scores. Any damage to the
folder is an ArtifactError naming the file (tests/test_loader_properties.py); inputs of the wrong shape or
with NaN/inf are a DataError naming the side, the shape or the rows.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from projector.formats.artifact import MODEL_FILE, META_FILE, folded_matrix, read_meta, tensor_shapes
from projector.errors import ArtifactError, DataError
from projector.formats.vectors import l2_normalise, normalises_documents, normalises_queries

log = logging.getLogger("projector.loader")


class Projection:
    """A loaded projection. Attributes: mode, encoder (identity), dim (d), rank (k), scale, bias,
    normalize, templates, W_q_ (k, d), W_a_ (k, d) (the same array for a symmetric model), M_ (d, d)."""

    def __init__(self, path: Path, meta: dict, tensors: dict[str, np.ndarray], encoder_source):
        self.path, self.meta = path, meta
        self.mode, self.encoder, self.dim, self.rank = meta["mode"], meta["encoder"], meta["dim"], meta["rank"]
        self.normalize = meta.get("normalize", "both")
        self.templates = meta.get("templates") or {}
        self.scale, self.bias = float(tensors["scale"][0]), float(tensors["bias"][0])
        self.W_q_ = tensors["W_q"] if self.mode == "asymmetric" else tensors["W"]
        self.W_a_ = tensors["W_a"] if self.mode == "asymmetric" else tensors["W"]
        self.M_ = tensors["M"] if "M" in tensors else folded_matrix(tensors)  # an artifact may omit M
        self._encoder_source = encoder_source

    def __repr__(self) -> str:
        return (f"Projection(mode={self.mode!r}, encoder={self.encoder!r}, dim={self.dim}, rank={self.rank}, "
                f"path={str(self.path)!r})")

    def _check(self, emb, what: str) -> np.ndarray:
        try:
            x = np.asarray(emb)
            if x.dtype.kind not in "fiub":  # complex would lose its imaginary part, strings and objects are no vectors
                raise TypeError(f"dtype {x.dtype}")
            x = x.astype(np.float32)
        except (TypeError, ValueError) as e:
            raise DataError(f"{what} must be a numeric array of shape (n, {self.dim}), got {type(emb).__name__} "
                            f"({str(e)[:80]})") from e
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise DataError(f"{what} must have shape (n, {self.dim}) for encoder {self.encoder}, got {x.shape}; "
                            "embed with the encoder recorded in projector.json")
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise DataError(f"{what} contain NaN/inf (row{'s' if len(rows) > 1 else ''} "
                            f"{', '.join(map(str, rows[:5]))}{', ...' if len(rows) > 5 else ''} of {len(x)}); "
                            "check the texts and the encoder")
        return l2_normalise(x, precision=np.float64)  # trained on L2-normalised encoder vectors; f64: no overflow

    def project_queries(self, emb) -> np.ndarray:
        """(n, d) query embeddings -> (n, k)."""
        z = self._check(emb, "query embeddings") @ self.W_q_.T
        return l2_normalise(z, precision=np.float64) if normalises_queries(self.normalize) else z

    def project_documents(self, emb) -> np.ndarray:
        """(n, d) document embeddings -> (n, k)."""
        z = self._check(emb, "document embeddings") @ self.W_a_.T
        return l2_normalise(z, precision=np.float64) if normalises_documents(self.normalize) else z

    def score(self, q_emb, d_emb) -> np.ndarray:
        """Logits s · P_q(q) · P_d(d) + b: (nq, d), (nd, d) -> (nq, nd)."""
        return self.scale * (self.project_queries(q_emb) @ self.project_documents(d_emb).T) + self.bias

    def probability(self, q_emb, d_emb) -> np.ndarray:
        """P(relevant) = sigmoid(score): (nq, nd)."""
        return 1.0 / (1.0 + np.exp(-self.score(q_emb, d_emb)))

    def _embed(self, texts, template):
        from projector.embed.embedding import embed
        from projector.embed.encoder import encoder_dim, encoder_identity, load_encoder
        from projector.embed.endpoint import is_endpoint

        source = self._encoder_source
        if encoder_identity(source) != self.encoder:
            raise ArtifactError(f"encoder {source!r} is {encoder_identity(source)}, but {self.path} was trained on "
                                f"{self.encoder}; pass load(..., encoder=) the encoder it was trained on")
        if not is_endpoint(source) and encoder_dim(load_encoder(source)) != self.dim:  # (an endpoint's replies
            # are checked against the dimension it gave first; a mismatch is project_*'s DataError)
            raise ArtifactError(f"encoder {self.encoder} gives {encoder_dim(load_encoder(source))}-d vectors, "
                                f"{self.path} expects {self.dim}")
        if self.meta.get("rewrite"):
            log.warning("%s was trained on LLM-rewritten passages (%s): rewrite documents the same way first",
                        self.path, self.meta["rewrite"].get("prompt_version"))
        return embed(list(texts), source, template=template, cache_dir=False, show_progress=False)

    def encode_queries(self, texts) -> np.ndarray:
        """Texts -> projected query vectors (n, k), with the recorded query template."""
        return self.project_queries(self._embed(texts, self.templates.get("query")))

    def encode_documents(self, texts) -> np.ndarray:
        """Texts -> projected document vectors (n, k), with the recorded document template."""
        return self.project_documents(self._embed(texts, self.templates.get("document")))


def _read_tensors(path: Path, meta: dict) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load

    fpath = path / MODEL_FILE
    if not fpath.is_file():
        raise ArtifactError(f"{fpath} not found; the folder is incomplete: re-export it")
    try:
        data = fpath.read_bytes()
    except OSError as e:
        raise ArtifactError(f"cannot read {fpath} ({e}); check its permissions") from e
    expected = (meta.get("files") or {}).get(MODEL_FILE)
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise ArtifactError(f"{fpath} does not match the checksum in projector.json (corrupt or edited); re-export it")
    try:
        t = load(data)
    except (SafetensorError, ValueError, TypeError, OverflowError, MemoryError) as e:
        raise ArtifactError(f"{fpath} is not a readable safetensors file ({str(e)[:160]}); re-export it") from e
    for name, shape in tensor_shapes(meta, with_folding="M" in t).items():
        if name not in t:
            raise ArtifactError(f"{fpath} lacks tensor {name!r} needed by a {meta['mode']} projection; re-export it")
        if t[name].shape != shape:
            raise ArtifactError(f"{fpath}: {name} has shape {t[name].shape}, projector.json says {shape}; re-export it")
        if t[name].dtype.kind != "f":
            raise ArtifactError(f"{fpath}: {name} has dtype {t[name].dtype}, expected floats; re-export it")
        if not np.isfinite(t[name]).all():
            raise ArtifactError(f"{fpath}: {name} contains NaN/inf; re-train")
    if not t["scale"][0] > 0:
        raise ArtifactError(f"{fpath}: scale is {t['scale'][0]}, must be > 0 (a negative scale reverses every "
                            "ranking); re-export it")
    return {n: v.astype(np.float32) for n, v in t.items()}


def load(path, encoder=None, encoder_base_url: str | None = None) -> Projection:
    """Load a projection folder. ``encoder`` (name or folder) overrides where the encoder is loaded from for
    ``encode_*``; it must be the encoder recorded in projector.json (checked by identity, else ArtifactError).

    An endpoint encoder (``openai:MODEL``) is re-created from projector.json ``encoder_endpoint`` (its base URL,
    dimensions and the name of the variable holding the key, read from the environment at each request)
    unless this process configured it already (a stage's ``--encoder-*`` flags); ``encoder_base_url`` points
    it at another server of the same model."""
    path = Path(path)
    if (path / META_FILE).is_file() is False and (path.parent / META_FILE).is_file():
        path = path.parent  # accept the sentence-transformers/ sub-folder too
    meta = read_meta(path)
    tensors = _read_tensors(path, meta)
    source = encoder if encoder is not None else (meta.get("encoder_source") or meta["encoder"])
    _configure_endpoint(source, meta, encoder_base_url)
    if encoder is not None:
        from projector.embed.encoder import encoder_identity

        ident = encoder_identity(encoder)
        if ident != meta["encoder"]:
            raise ArtifactError(f"{path} was trained on encoder {meta['encoder']}, not {ident}; its projection is "
                                "meaningless on other vectors: load it with the recorded encoder or re-train")
    return Projection(path, meta, tensors, source)


def _configure_endpoint(source, meta: dict, base_url: str | None) -> None:
    """Register the recorded endpoint of an ``openai:MODEL`` encoder (imports nothing for other encoders)."""
    if not (isinstance(source, str) and source.startswith("openai:")):
        return
    from projector.embed import endpoint

    if base_url or not endpoint.is_configured(source):
        endpoint.configure_from_meta(source, meta, base_url)
