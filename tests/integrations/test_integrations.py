"""projector.integrations with the real libraries (LangChain, LlamaIndex, Chroma; the `integrations` extra), no mocks.

The task (tests/train/test_train.make_qa_pairs) is one where frozen cosine is wrong and the two maps matter: a
query about an item's *song* must find the item's *recipe*. Cosine finds 0 of 30 recipes; the trained
asymmetric model ~0.8-0.9; the same model with its sides swapped, or with the document map on both sides
(what a route-blind ``encode()`` did), ~0. So every "right side" test here fails when the sides are swapped.
"""
import contextlib
import io
import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("langchain_core", reason="the integrations extra is not installed: pip install -e '.[integrations]'")
pytest.importorskip("llama_index.core", reason="the integrations extra is not installed: pip install -e '.[integrations]'")
pytest.importorskip("chromadb", reason="the integrations extra is not installed: pip install -e '.[integrations]'")

from test_train import FAST, ITEMS, make_qa_pairs  # noqa: E402  (tests/ is on sys.path: conftest.py)

REPO = Path(__file__).resolve().parents[2]
K = 10
QUERIES = [f"a catchy tune with guitar celebrating the {it}" for it in ITEMS]


@pytest.fixture(scope="module")
def qa(tmp_path_factory):
    return make_qa_pairs(tmp_path_factory.mktemp("pairs") / "qa")


@pytest.fixture(scope="module")
def corpus(qa):
    passages = [json.loads(line) for line in (qa / "passages.jsonl").read_text().splitlines()]
    ids, texts = [p["passage_id"] for p in passages], [p["text"] for p in passages]
    truth = [ids.index(f"r{i}") for i in range(len(ITEMS))]   # each query's relevant passage: the recipe
    return ids, texts, truth


def _train(qa, out, **kw):
    from projector.train.stage import train

    train(pairs=str(qa), out=str(out), **{**FAST, **kw})
    return out


@pytest.fixture(scope="module")
def asym(qa, tmp_path_factory):
    """Asymmetric, default --normalize both, with the sentence-transformers export."""
    return _train(qa, tmp_path_factory.mktemp("models") / "asym", sentence_transformers=True)


@pytest.fixture(scope="module")
def asym_query(qa, tmp_path_factory):
    """Asymmetric, --normalize query: folding is exact."""
    return _train(qa, tmp_path_factory.mktemp("models") / "asym-query", normalize="query")


def _frozen(texts, template=None):
    from projector.embed.embedding import embed

    return embed(texts, template=template, show_progress=False)


def _projector_top(folder, texts, k=K):
    """projector's own ranking: projector.load(folder).score on the frozen encoder's vectors."""
    import projector

    p = projector.load(folder)
    s = p.score(_frozen(QUERIES, p.templates.get("query")), _frozen(texts, p.templates.get("document")))
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def _hits(top1, truth):
    return float(np.mean([a == t for a, t in zip(top1, truth)]))


# ------------------------------------------------------------------------------------------ sides


def test_langchain_embeddings_take_the_query_and_document_maps(asym, corpus):
    import projector
    from projector.integrations.langchain import ProjectorEmbeddings

    ids, texts, truth = corpus
    p = projector.load(asym)
    emb = ProjectorEmbeddings(asym)
    q = np.array([emb.embed_query(t) for t in QUERIES])            # (30, k)
    d = np.array(emb.embed_documents(texts))                       # (60, k)
    assert np.allclose(q, p.project_queries(_frozen(QUERIES)), atol=1e-5)     # W_q, not W_a
    assert np.allclose(d, p.project_documents(_frozen(texts)), atol=1e-5)     # W_a, not W_q
    assert not np.allclose(q, p.project_documents(_frozen(QUERIES)), atol=1e-3)  # the sides really differ
    # what the sides are for: held-out and training items alike find their recipe; swapped they do not
    q_as_doc = np.array(emb.embed_documents(QUERIES))                       # queries through W_a
    d_as_query = np.array([emb.embed_query(t) for t in texts])               # documents through W_q
    right = _hits((q @ d.T).argmax(1), truth)
    swapped = _hits((q_as_doc @ d_as_query.T).argmax(1), truth)
    document_map_both = _hits((q_as_doc @ d.T).argmax(1), truth)             # what a route-blind encode() did
    cosine = _hits((_frozen(QUERIES) @ _frozen(texts).T).argmax(1), truth)
    print(f"\nright passage first: integration sides {right:.0%}, swapped {swapped:.0%}, document map on both "
          f"sides {document_map_both:.0%}, cosine {cosine:.0%}")
    assert right >= 0.7 and max(swapped, document_map_both, cosine) <= 0.2, (right, swapped, document_map_both,
                                                                             cosine)


def test_llama_index_embedding_takes_the_query_and_text_maps(asym, corpus):
    import projector
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode
    from projector.integrations.llama_index import ProjectorEmbedding

    ids, texts, truth = corpus
    p = projector.load(asym)
    emb = ProjectorEmbedding(asym)
    assert np.allclose(emb.get_query_embedding(QUERIES[0]), p.project_queries(_frozen(QUERIES[:1]))[0], atol=1e-5)
    assert np.allclose(emb.get_text_embedding_batch(texts), p.project_documents(_frozen(texts)), atol=1e-5)
    # a real LlamaIndex index (its in-memory vector store) retrieves what projector ranks first
    index = VectorStoreIndex([TextNode(id_=i, text=t) for i, t in zip(ids, texts)], embed_model=emb)
    retriever = index.as_retriever(similarity_top_k=K)
    top = _projector_top(asym, texts)
    got = [[n.node.node_id for n in retriever.retrieve(q)] for q in QUERIES]
    assert got == [[ids[j] for j in row] for row in top]


# ------------------------------------------------------------------------------------ vector store


def test_chroma_persistent_store_top_k_equals_projector_ranking(asym, corpus, tmp_path):
    import chromadb
    from projector.integrations.chroma import ProjectorEmbeddingFunction

    ids, texts, truth = corpus
    db = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    col = db.create_collection("docs", embedding_function=ProjectorEmbeddingFunction(asym),
                               configuration={"hnsw": {"space": "ip"}})
    col.add(ids=ids, documents=texts)                                  # documents: __call__, the W_a side
    res = col.query(query_texts=QUERIES, n_results=K)                  # queries: embed_query, the W_q side
    want = [[ids[j] for j in row] for row in _projector_top(asym, texts)]
    agree = np.mean([a == b for a, b in zip(res["ids"], want)])
    print(f"\nChroma top-{K} = projector ranking for {agree:.0%} of {len(QUERIES)} queries")
    assert res["ids"] == want
    assert _hits([ids.index(r[0]) for r in res["ids"]], truth) >= 0.7
    # re-opened from disk without an embedding function: the stored config brings the projection back
    again = chromadb.PersistentClient(path=str(tmp_path / "chroma")).get_collection("docs")
    assert again.query(query_texts=QUERIES[:5], n_results=K)["ids"] == want[:5]


def test_langchain_vector_store_top_k_equals_projector_ranking(asym, corpus):
    from langchain_core.vectorstores import InMemoryVectorStore
    from projector.integrations.langchain import ProjectorEmbeddings

    ids, texts, _ = corpus
    store = InMemoryVectorStore(embedding=ProjectorEmbeddings(asym))  # cosine; our vectors have length 1
    store.add_texts(texts, ids=ids)
    got = [[d.id for d in store.similarity_search(q, k=K)] for q in QUERIES]
    assert got == [[ids[j] for j in row] for row in _projector_top(asym, texts)]


def test_keep_your_index_folded_queries_against_an_untouched_index(asym_query, asym, corpus, tmp_path):
    """Documents embedded once with the frozen encoder, never re-indexed; only the queries change (M q)."""
    import chromadb
    from projector.integrations.langchain import ProjectorEmbeddings

    ids, texts, truth = corpus
    frozen = _frozen(texts)
    col = chromadb.PersistentClient(path=str(tmp_path / "chroma")).create_collection(
        "existing-index", configuration={"hnsw": {"space": "ip"}})
    col.add(ids=ids, embeddings=frozen)                          # the index the user already has
    fold = ProjectorEmbeddings(asym_query, fold=True)
    assert np.allclose(fold.embed_documents(texts), frozen, atol=1e-6)   # new documents go in as before
    res = col.query(query_embeddings=[fold.embed_query(q) for q in QUERIES], n_results=K)
    assert res["ids"] == [[ids[j] for j in row] for row in _projector_top(asym_query, texts)]   # exact
    stored = col.get(ids=ids, include=["embeddings"])
    assert np.array_equal(np.asarray(stored["embeddings"], dtype=np.float32), frozen)         # untouched
    # --normalize both: folding is not exact, but keeps most of the gain over cosine (no re-indexing)
    both = ProjectorEmbeddings(asym, fold=True)
    assert not both.sides.fold_exact and fold.sides.fold_exact
    res = col.query(query_embeddings=[both.embed_query(q) for q in QUERIES], n_results=1)
    cosine = _hits((_frozen(QUERIES) @ frozen.T).argmax(1), truth)
    assert _hits([ids.index(r[0]) for r in res["ids"]], truth) > cosine + 0.5


def test_readme_folding_example_runs_and_prints_the_cost(asym, qa):
    """docs/production.md's keep-your-index example, run as written on a model trained here."""
    text = (REPO / "docs" / "production.md").read_text()
    code = re.search(r"```python\n(# keep-your-index: the measured cost.*?)```", text, re.S).group(1)
    code = re.sub(r'^MODEL, PAIRS = .*$', f'MODEL, PAIRS = {str(asym)!r}, {str(qa)!r}', code, flags=re.M)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, "docs/production.md", "exec"), {})
    out = buf.getvalue()
    print("\n" + out)
    vals = dict(re.findall(r"^(cosine|model|folded)\s+NDCG@10 ([0-9.]+)", out, re.M))
    assert set(vals) == {"cosine", "model", "folded"}, out
    assert float(vals["model"]) > float(vals["cosine"]) and float(vals["folded"]) > float(vals["cosine"]), out


# ------------------------------------------------------------------------ the sentence-transformers export


def test_route_blind_encode_on_the_asymmetric_export_raises(asym):
    import projector
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(asym / "sentence-transformers"), device="cpu")
    with pytest.raises(ValueError, match=r"task"):
        st.encode(QUERIES[:2])                      # no side named: refused, not the document route
    p = projector.load(asym)
    assert np.allclose(st.encode_query(QUERIES[:3]), p.encode_queries(QUERIES[:3]), atol=1e-5)
    assert np.allclose(st.encode_document(QUERIES[:3]), p.encode_documents(QUERIES[:3]), atol=1e-5)
    readme = (asym / "sentence-transformers" / "README.md").read_text()
    assert "encode_query" in readme and "encode_document" in readme and "projector.integrations" in readme


def test_the_documented_langchain_huggingface_setting_picks_each_route(asym):
    """README: HuggingFaceEmbeddings(encode_kwargs={"task": "document", "prompt_name": "document"},
    query_encode_kwargs={"task": "query", "prompt_name": "query"}) passes these to SentenceTransformer.encode."""
    import projector
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(asym / "sentence-transformers"), device="cpu")
    p = projector.load(asym)
    q = st.encode(QUERIES[:3], task="query", prompt_name="query")
    d = st.encode(QUERIES[:3], task="document", prompt_name="document")
    assert np.allclose(q, p.encode_queries(QUERIES[:3]), atol=1e-5)
    assert np.allclose(d, p.encode_documents(QUERIES[:3]), atol=1e-5)


def test_langchain_huggingface_wrapper_with_the_documented_setting(asym):
    hf = pytest.importorskip("langchain_huggingface", reason="langchain-huggingface 1.x pins huggingface-hub<2, "
                             "older than what sentence-transformers 6 here needs, so the extra leaves it out")
    import projector

    emb = hf.HuggingFaceEmbeddings(model_name=str(asym / "sentence-transformers"), model_kwargs={"device": "cpu"},
                                   encode_kwargs={"task": "document", "prompt_name": "document"},
                                   query_encode_kwargs={"task": "query", "prompt_name": "query"})
    p = projector.load(asym)
    assert np.allclose(emb.embed_query(QUERIES[0]), p.encode_queries(QUERIES[:1])[0], atol=1e-5)
    assert np.allclose(emb.embed_documents(QUERIES[:2]), p.encode_documents(QUERIES[:2]), atol=1e-5)


def test_library_wrappers_without_a_route_refuse_the_asymmetric_export(asym):
    """Chroma's SentenceTransformerEmbeddingFunction and LlamaIndex's HuggingFaceEmbedding call encode() with
    no side: on our export they raise, where with a default route they ranked with the document map."""
    from chromadb.utils.embedding_functions import SentenceTransformerEmbeddingFunction

    folder = str(asym / "sentence-transformers")
    with pytest.raises(ValueError, match="task"):
        SentenceTransformerEmbeddingFunction(model_name=folder).embed_query(QUERIES[:1])
    li = pytest.importorskip("llama_index.embeddings.huggingface")
    with pytest.raises(ValueError, match="task"):
        li.HuggingFaceEmbedding(model_name=folder, device="cpu").get_query_embedding(QUERIES[0])


# ---------------------------------------------------------------------------------------- rewrite


def test_a_model_trained_on_rewritten_passages_warns_in_every_integration(asym, tmp_path):
    from projector.integrations.chroma import ProjectorEmbeddingFunction
    from projector.integrations.langchain import ProjectorEmbeddings
    from projector.integrations.llama_index import ProjectorEmbedding
    from projector.integrations.sides import RewriteWarning

    folder = tmp_path / "rewritten"
    shutil.copytree(asym, folder, ignore=shutil.ignore_patterns("sentence-transformers", "checkpoint"))
    meta = json.loads((folder / "projector.json").read_text())
    meta["rewrite"] = {"prompt": "Rewrite the passage as plain content: {text}", "prompt_version": "rewrite.v1@test"}
    (folder / "projector.json").write_text(json.dumps(meta))
    for cls in (ProjectorEmbeddings, ProjectorEmbedding, ProjectorEmbeddingFunction):
        with pytest.warns(RewriteWarning, match=r"rewritten .*rewrite\.v1@test.*same prompt"):
            cls(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RewriteWarning)
        ProjectorEmbeddings(asym)                   # no rewrite recorded: silent
