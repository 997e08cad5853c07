"""LangChain: a ``langchain_core.embeddings.Embeddings`` whose queries and documents take their own maps.

    from projector.integrations.langchain import ProjectorEmbeddings
    emb = ProjectorEmbeddings("runs/model")          # projector.load(folder) underneath
    emb.embed_query("how do I read a file?")         # W_q, with the recorded query template
    emb.embed_documents(["Use open() ..."])          # W_a, with the recorded document template
    ProjectorEmbeddings("runs/model", base=OpenAIEmbeddings(model="text-embedding-3-small"))  # your embeddings
    # any LangChain vector store, e.g. langchain-chroma:  Chroma(embedding_function=emb, ...)

LangChain calls ``embed_query`` for searches and ``embed_documents`` when indexing, so an asymmetric model
is used the way it was trained. ``ProjectorEmbeddings(folder, fold=True)`` is the keep-your-index mode:
``embed_documents`` gives the frozen encoder's vectors (the index you have) and ``embed_query`` the folded
query ``M q`` (see projector.integrations.sides). Needs ``pip install "projector[integrations]"``.
"""
from __future__ import annotations

from langchain_core.embeddings import Embeddings

from projector.integrations.sides import BaseSides, Sides


class ProjectorEmbeddings(Embeddings):
    """LangChain embeddings of a projector folder. ``sides`` holds the loaded projection (``sides.projection``)."""

    def __init__(self, folder, encoder=None, fold: bool = False, base: Embeddings | None = None):
        """``base``: your LangChain ``Embeddings`` of the encoder the folder was trained on (e.g.
        ``OpenAIEmbeddings(model=...)``) computes the frozen vectors; projector applies W_q / W_a."""
        sides = None
        if base is not None:
            sides = BaseSides(lambda ts: [base.embed_query(t) for t in ts], base.embed_documents, type(base).__name__)
        self.sides = Sides(folder, encoder=encoder, fold=fold, base=sides)

    def __repr__(self) -> str:
        return f"ProjectorEmbeddings({self.sides!r})"

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.sides.documents(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.sides.queries([text])[0].tolist()
