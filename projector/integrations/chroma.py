"""Chroma: an embedding function with both sides (Chroma calls ``embed_query`` for ``query_texts``).

    import chromadb
    from projector.integrations.chroma import ProjectorEmbeddingFunction
    ef = ProjectorEmbeddingFunction("runs/model")              # projector.load(folder) underneath
    db = chromadb.PersistentClient(path="runs/chroma")
    col = db.get_or_create_collection("docs", embedding_function=ef, configuration={"hnsw": {"space": "ip"}})
    col.add(ids=ids, documents=passages)                       # __call__: the document map W_a
    col.query(query_texts=["how do I read a file?"], n_results=10)   # embed_query: the query map W_q

Chroma (>= 1.0) embeds ``documents`` with ``__call__`` and ``query_texts`` with ``embed_query``, so an
asymmetric model is used as trained. Search by inner product (``space: ip``): with the default
``--normalize both`` every vector has length 1 and ip ranks like cosine; with ``--normalize query`` or
``none`` the document lengths carry part of the score, which cosine or l2 would throw away.
``fold=True`` (keep your index): documents are the frozen encoder's vectors, queries the folded ``M q``.
The function is registered under the name "projector": a persisted collection re-opened without an
embedding function gets it back from its stored config (folder, fold, encoder).
Needs ``pip install "projector[integrations]"``.

Chroma's own ``SentenceTransformerEmbeddingFunction`` has no query side (it calls ``encode`` for both):
on an asymmetric export it raises; use this function.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from projector.integrations.sides import BaseSides, Sides


@register_embedding_function
class ProjectorEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma embedding function of a projector folder; ``sides`` holds the loaded projection."""

    def __init__(self, folder, encoder: str | None = None, fold: bool = False,
                 base: EmbeddingFunction | None = None):
        """``base``: your Chroma embedding function of the encoder the folder was trained on (e.g.
        ``OpenAIEmbeddingFunction``) computes the frozen vectors; projector applies W_q / W_a."""
        self.folder, self.encoder, self.fold, self.base = str(folder), encoder, bool(fold), base
        sides = None
        if base is not None:
            query = getattr(base, "embed_query", None) or base
            sides = BaseSides(lambda ts: list(query(list(ts))), lambda ts: list(base(list(ts))), type(base).__name__)
        self.sides = Sides(folder, encoder=encoder, fold=fold, base=sides)

    def __call__(self, input: Documents) -> Embeddings:
        return [np.asarray(v, dtype=np.float32) for v in self.sides.documents(list(input))]

    def embed_query(self, input: Documents) -> Embeddings:
        return [np.asarray(v, dtype=np.float32) for v in self.sides.queries(list(input))]

    @staticmethod
    def name() -> str:
        return "projector"

    def default_space(self) -> str:
        return "ip"

    def supported_spaces(self) -> list[str]:
        return ["ip", "cosine", "l2"] if self.sides.projection.normalize == "both" and not self.fold else ["ip"]

    def get_config(self) -> dict[str, Any]:
        config = {"folder": self.folder, "encoder": self.encoder, "fold": self.fold}
        if self.base is not None:  # rebuilt from Chroma's registry when the collection is re-opened
            config["base"] = {"name": self.base.name(), "config": self.base.get_config()}
        return config

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "ProjectorEmbeddingFunction":
        base = None
        if config.get("base"):
            from chromadb.utils.embedding_functions import config_to_embedding_function

            base = config_to_embedding_function({"name": config["base"]["name"], "type": "known",
                                                 "config": config["base"]["config"]})
        return ProjectorEmbeddingFunction(config["folder"], encoder=config.get("encoder"),
                                          fold=bool(config.get("fold")), base=base)
