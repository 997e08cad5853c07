"""The integrations with the user's own embedding object as the base (projector.integrations.sides.BaseSides).

A projection trained through tests/openai_server.py's /v1/embeddings (8-d hash vectors); the base objects are
a LangChain ``Embeddings``, a LlamaIndex ``BaseEmbedding`` and Chroma's own ``OpenAIEmbeddingFunction``
pointed at the same server. Each must give what projector's own endpoint encoder gives.
"""
import numpy as np
import pytest

from openai_server import FakeOpenAI
from projector.embed import embed
from projector.embed import endpoint as E
from projector.errors import DataError

QUERIES = ["a catchy tune with guitar celebrating the mango", "something else"]
DOCS = ["Recipe: slice the mango.", "Song lyrics: a cheerful melody about the pear."]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(server, trained folder): the server stays up for the module."""
    from test_train import make_qa_pairs
    from projector.train.stage import main

    tmp = tmp_path_factory.mktemp("endpoint-int")
    pairs = make_qa_pairs(tmp / "qa")
    with FakeOpenAI() as srv:
        assert main(["--pairs", str(pairs), "--out", str(tmp / "m"), "--encoder", "openai:fake-embed",
                     "--encoder-base-url", srv.base_url, "--epochs", "2", "--batch-size", "8", "--threads", "1"]) == 0
        yield srv, tmp / "m"


def _reference(folder, srv):
    """Queries and documents through projector's own endpoint encoder (projector.load)."""
    import projector

    E.configure("openai:fake-embed", base_url=srv.base_url)
    p = projector.load(folder)
    return p.encode_queries(QUERIES), p.encode_documents(DOCS)


def _frozen(texts):
    return embed(texts, "openai:fake-embed", cache_dir=False, show_progress=False)


def test_langchain_base_embeddings(served):
    from langchain_core.embeddings import Embeddings
    from projector.integrations.langchain import ProjectorEmbeddings

    srv, folder = served

    class Mine(Embeddings):  # a user's own LangChain embeddings of the same model
        def embed_documents(self, texts):
            return (_frozen(texts) * 3.0).tolist()  # any length: projector normalises as in training

        def embed_query(self, text):
            return _frozen([text])[0].tolist()

    q, d = _reference(folder, srv)
    emb = ProjectorEmbeddings(folder, base=Mine())
    np.testing.assert_allclose(emb.embed_documents(DOCS), d, atol=1e-5)
    np.testing.assert_allclose([emb.embed_query(t) for t in QUERIES], q, atol=1e-5)


def test_llama_index_base_embed_model(served):
    from llama_index.core.embeddings import BaseEmbedding
    from projector.integrations.llama_index import ProjectorEmbedding

    srv, folder = served

    class Mine(BaseEmbedding):
        def _get_query_embedding(self, query):
            return _frozen([query])[0].tolist()

        async def _aget_query_embedding(self, query):
            return _frozen([query])[0].tolist()

        def _get_text_embedding(self, text):
            return _frozen([text])[0].tolist()

    q, d = _reference(folder, srv)
    emb = ProjectorEmbedding(folder, base_embed_model=Mine(model_name="mine"))
    np.testing.assert_allclose(emb.get_text_embedding_batch(DOCS), d, atol=1e-5)
    np.testing.assert_allclose(emb.get_query_embedding(QUERIES[0]), q[0], atol=1e-5)


def test_chroma_openai_embedding_function_as_base(served, monkeypatch):
    from chromadb.utils.embedding_functions import OpenAIEmbeddingFunction
    from projector.integrations.chroma import ProjectorEmbeddingFunction

    srv, folder = served
    monkeypatch.setenv("CHROMA_OPENAI_API_KEY", "not-needed")
    base = OpenAIEmbeddingFunction(model_name="fake-embed", api_base=srv.base_url)
    q, d = _reference(folder, srv)
    ef = ProjectorEmbeddingFunction(folder, base=base)
    np.testing.assert_allclose(np.stack(ef(DOCS)), d, atol=1e-5)
    np.testing.assert_allclose(np.stack(ef.embed_query(QUERIES)), q, atol=1e-5)


def test_a_base_of_another_dimension_is_a_clear_error(served):
    from langchain_core.embeddings import Embeddings
    from projector.integrations.langchain import ProjectorEmbeddings

    class Wrong(Embeddings):
        def embed_documents(self, texts):
            return [[0.1] * 384 for _ in texts]

        def embed_query(self, text):
            return [0.1] * 384

    with pytest.raises(DataError, match=r"shape \(1, 384\).* 8-d vectors of openai:fake-embed"):
        ProjectorEmbeddings(served[1], base=Wrong()).embed_query("x")
