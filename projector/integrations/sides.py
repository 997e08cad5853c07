"""The two sides of a trained projection as plain text -> vector functions, for the library adapters beside this file.

    from projector.integrations.sides import Sides
    s = Sides("runs/model")                    # projector.load(folder) underneath
    s.queries(["how do I read a file?"])       # (n, k) through the query map W_q, with the query template
    s.documents(passages)                      # (n, k) through the document map W_a, with the document template
    Sides("runs/model", fold=True)             # keep your index: queries (n, d) = M q, documents the frozen encoder

``base=``: your own embedding object computes the frozen vectors (a LangChain ``Embeddings``, a LlamaIndex
``BaseEmbedding``, a Chroma embedding function: each adapter passes its library's two calls here as
``BaseSides``), and projector applies ``W_q``/``W_a`` on top, as LlamaIndex's adapter wraps ``base_embed_model``.
It must be the model the folder was trained on (projector.json ``encoder``): only the dimension can be checked.

Why a shared core: LangChain, LlamaIndex and Chroma each ask for "embed a query" and "embed documents";
an asymmetric model must answer them with different maps. Every adapter delegates here, so that no adapter
can pick the wrong side, and the checks (rewrite warning, fold exactness) are written once.

``fold=True`` is the "keep your index" path: documents stay what the frozen encoder gives (unit vectors,
the index you already have, never re-embedded), queries become ``M q`` with ``M = W_aᵀ W_q`` from
model.safetensors, so that ``(M q)·d = (W_q q)·(W_a d)``. Search that index by inner product. The ranking
is the model's exactly under ``--normalize query`` (or ``none``); under the default ``--normalize both``
each document's projected length also divides its score, which folding cannot reproduce:
``fold_exact`` says which, and projector.json ``folding`` records the validation NDCG@10 folding reaches.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

log = logging.getLogger("projector.integrations")


class RewriteWarning(UserWarning):
    """The model was trained on LLM-rewritten passages: production documents need the same rewrite."""


@dataclass(frozen=True)
class BaseSides:
    """A user's embedding object as two functions: texts -> (n, d) vectors for queries, and for documents."""

    queries: Callable[[list[str]], object]
    documents: Callable[[list[str]], object]
    name: str = "base"


class Sides:
    """Text -> vectors for the query side and the document side of one projection folder.

    Parameters: ``folder`` (a projection folder, or its sentence-transformers/ sub-folder); ``encoder``
    (where to load the recorded encoder from, checked by identity; default: as recorded); ``fold``
    (keep-your-index mode, see the module docstring). Attributes: ``projection`` (the loaded
    ``projector.loader.Projection``), ``fold``, ``fold_exact`` (True when folded rankings equal the
    model's), ``dim`` (the vectors' length: rank k, or the encoder's d when folding).
    """

    def __init__(self, folder, encoder=None, fold: bool = False, base: BaseSides | None = None):
        import projector

        self.projection = p = projector.load(folder, encoder=encoder)
        self.fold = bool(fold)
        self.fold_exact = p.normalize != "both"
        self.dim = p.dim if self.fold else p.rank
        self._source = encoder if encoder is not None else (p.meta.get("encoder_source") or p.encoder)
        self._M = p.M_                                 # (d, d) folded query map
        self.base = base
        rewrite = p.meta.get("rewrite")
        if rewrite:
            msg = (f"{p.path} was trained on LLM-rewritten passages (prompt {rewrite.get('prompt_version')}): "
                   "production documents must be rewritten with the same prompt (projector.json -> rewrite.prompt) "
                   "before they are embedded, or its scores and probabilities do not hold")
            log.warning(msg)
            warnings.warn(msg, RewriteWarning, stacklevel=3)
        if self.fold and not self.fold_exact:
            log.info("%s: --normalize both: folded queries rank close to, not exactly like, the model "
                     "(projector.json folding.val_ndcg@10_folded)", p.path)
        if self.fold and p.templates.get("document"):
            log.warning("%s embeds documents with the template %r; an index built without it is not the one "
                        "the folded M was trained against", p.path, p.templates["document"])

    def __repr__(self) -> str:
        return f"Sides({str(self.projection.path)!r}, mode={self.projection.mode!r}, fold={self.fold})"

    def _encode(self, texts: list[str], side: str) -> np.ndarray:
        from projector.embed.embedding import embed

        if self.base is not None:
            return self._encode_base(texts, side)
        return embed([str(t) for t in texts], self._source, template=self.projection.templates.get(side),
                     cache_dir=False, show_progress=False)  # (n, d), unit length

    def _encode_base(self, texts: list[str], side: str) -> np.ndarray:
        """The user's embedding object's vectors of ``texts`` (with the recorded template), checked, unit length."""
        from projector.embed.encoder import apply_template
        from projector.errors import DataError
        from projector.formats.vectors import l2_normalise

        texts = apply_template([str(t) for t in texts], self.projection.templates.get(side))
        fn = self.base.queries if side == "query" else self.base.documents
        x = np.asarray(fn(texts), dtype=np.float32)
        p = self.projection
        if x.ndim != 2 or x.shape != (len(texts), p.dim):
            raise DataError(f"{self.base.name} gave {side} vectors of shape {x.shape}, but {p.path} was trained on "
                            f"{p.dim}-d vectors of {p.encoder}: pass the embedding model it was trained on")
        if not np.isfinite(x).all():
            raise DataError(f"{self.base.name} gave NaN/inf {side} vectors; check the texts and that model")
        return l2_normalise(x)                         # (n, d): training saw unit vectors

    def queries(self, texts: list[str]) -> np.ndarray:
        """(n, k) projected query vectors; with ``fold``: (n, d) folded queries ``M q``."""
        q = self._encode(texts, "query")
        if self.fold:
            return q @ self._M.T                       # (n, d): (M q)·d = (W_q q)·(W_a d)
        return self.projection.project_queries(q)

    def documents(self, texts: list[str]) -> np.ndarray:
        """(n, k) projected document vectors; with ``fold``: (n, d) the frozen encoder's unit vectors."""
        d = self._encode(texts, "document")
        return d if self.fold else self.projection.project_documents(d)
