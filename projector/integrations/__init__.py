"""Adapters that put a trained projection into the libraries users already run; optional extras.

    pip install "projector[integrations]"     # langchain-core, llama-index-core, chromadb

    projector.integrations.langchain     ProjectorEmbeddings         langchain_core Embeddings
    projector.integrations.llama_index   ProjectorEmbedding          llama_index BaseEmbedding
    projector.integrations.chroma        ProjectorEmbeddingFunction  Chroma embedding function (query side too)
    projector.integrations.sides         Sides                       the shared core: text -> query / document vectors

Each is built on ``projector.load(folder)``: queries through the query map, documents through the document
map, the recorded templates applied; ``fold=True`` everywhere is the keep-your-index mode (documents are the
frozen encoder's vectors, queries the folded ``M q``). A model trained on LLM-rewritten passages warns
(``RewriteWarning``) that production documents need the same rewrite. Import the module of the library you
use: importing this package imports none of them.
"""
