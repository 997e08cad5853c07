"""LangChain: a ``langchain_core.embeddings.Embeddings`` whose queries and documents take their own maps.

    from projector.integrations.langchain import ProjectorEmbeddings
    emb = ProjectorEmbeddings("runs/model")          # projector.load(folder) underneath
    emb.embed_query("how do I read a file?")         # W_q, with the recorded query template
    emb.embed_documents(["Use open() ..."])          # W_a, with the recorded document template
    # any LangChain vector store, e.g. langchain-chroma:  Chroma(embedding_function=emb, ...)

LangChain calls ``embed_query`` for searches and ``embed_documents`` when indexing, so an asymmetric model
is used the way it was trained. ``ProjectorEmbeddings(folder, fold=True)`` is the keep-your-index mode:
``embed_documents`` gives the frozen encoder's vectors (the index you have) and ``embed_query`` the folded
query ``M q`` (see projector.integrations.sides). Needs ``pip install "projector[integrations]"``.
"""
from __future__ import annotations

from langchain_core.embeddings import Embeddings

from projector.integrations.sides import Sides


class ProjectorEmbeddings(Embeddings):
    """LangChain embeddings of a projector folder. ``sides`` holds the loaded projection (``sides.projection``)."""

    def __init__(self, folder, encoder=None, fold: bool = False):
        self.sides = Sides(folder, encoder=encoder, fold=fold)

    def __repr__(self) -> str:
        return f"ProjectorEmbeddings({self.sides!r})"

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.sides.documents(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.sides.queries([text])[0].tolist()
