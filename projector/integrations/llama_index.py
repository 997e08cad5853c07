"""LlamaIndex: a ``llama_index.core.embeddings.BaseEmbedding`` whose queries and texts take their own maps.

    from llama_index.core import Settings, VectorStoreIndex
    from projector.integrations.llama_index import ProjectorEmbedding
    Settings.embed_model = ProjectorEmbedding("runs/model")      # projector.load(folder) underneath
    ProjectorEmbedding("runs/model", base_embed_model=OpenAIEmbedding(model="text-embedding-3-small"))
    index = VectorStoreIndex.from_documents(docs)                # nodes: the document map W_a
    index.as_retriever().retrieve("how do I read a file?")       # the query: the query map W_q

LlamaIndex embeds nodes with ``get_text_embedding(s)`` and searches with ``get_query_embedding``; both
land on the right side here. ``fold=True``: texts get the frozen encoder's vectors (keep your index),
queries the folded ``M q`` (projector.integrations.sides). Needs ``pip install "projector[integrations]"``.

LlamaIndex's own ``HuggingFaceEmbedding`` cannot be told the route (it calls ``encode`` with a prompt name
only and replaces the model's prompts with its own instructions): on an asymmetric export it raises
instead of answering queries with the document map; use this class.
"""
from __future__ import annotations

from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.embeddings import BaseEmbedding

from projector.integrations.sides import BaseSides, Sides


class ProjectorEmbedding(BaseEmbedding):
    """LlamaIndex embedding model of a projector folder; ``sides`` holds the loaded projection."""

    _sides: Sides = PrivateAttr()

    def __init__(self, folder, encoder=None, fold: bool = False, base_embed_model: BaseEmbedding | None = None,
                 **kwargs):
        """``base_embed_model``: your LlamaIndex ``BaseEmbedding`` of the encoder the folder was trained on (as
        LlamaIndex's ``AdapterEmbeddingModel`` takes it) computes the frozen vectors; projector applies W_q / W_a."""
        base = None
        if base_embed_model is not None:
            m = base_embed_model
            base = BaseSides(lambda ts: [m.get_query_embedding(t) for t in ts], m.get_text_embedding_batch,
                             type(m).__name__)
        sides = Sides(folder, encoder=encoder, fold=fold, base=base)
        super().__init__(model_name=f"projector:{sides.projection.path}{' (folded)' if fold else ''}", **kwargs)
        self._sides = sides

    @classmethod
    def class_name(cls) -> str:
        return "ProjectorEmbedding"

    @property
    def sides(self) -> Sides:
        return self._sides

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._sides.queries([query])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._sides.documents([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._sides.documents(list(texts)).tolist()
