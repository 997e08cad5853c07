"""--passage-vectors: train and evaluate from the user's own passage vectors (projector.embed.given).

The passages' vectors come from a Parquet file; the queries from the endpoint encoder at
tests/openai_server.py, which counts every text it embeds: no passage may reach it.
"""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from openai_server import FakeOpenAI
from projector.embed.given import read_vectors


def _export(path, ids, vectors, id_col="id", vec_col="vector"):
    pq.write_table(pa.table({id_col: ids, vec_col: [list(map(float, v)) for v in vectors]}), path)
    return path


@pytest.fixture
def qa(tmp_path, monkeypatch):
    from test_train import make_qa_pairs

    # A cache of its own: the session's may already hold these queries under openai:fake-embed (another test
    # trains on the same pairs through the fake server), and then none would be sent.
    monkeypatch.setenv("PROJECTOR_CACHE_DIR", str(tmp_path / "cache"))

    pairs = make_qa_pairs(tmp_path / "qa")
    rows = [json.loads(line) for line in (pairs / "passages.jsonl").read_text().splitlines()]
    return pairs, [r["passage_id"] for r in rows], [r["text"] for r in rows]


def _args(pairs, out, srv, vectors):
    return ["--pairs", str(pairs), "--out", str(out), "--encoder", "openai:fake-embed", "--encoder-base-url",
            srv.base_url, "--epochs", "2", "--batch-size", "8", "--threads", "1", "--passage-vectors", str(vectors)]


def test_train_and_evaluate_embed_no_passage_of_a_vectors_file(qa, tmp_path):
    from projector.evaluate.stage import main as evaluate
    from projector.train.stage import main as train

    pairs, ids, texts = qa
    with FakeOpenAI() as srv:
        vectors = _export(tmp_path / "index.parquet", ids, [np.array(srv.vector(t)) * 2 for t in texts])
        assert train(_args(pairs, tmp_path / "m", srv, vectors)) == 0
        assert not set(texts) & set(srv.embedded), "a passage was sent to the endpoint"
        assert srv.embedded  # the queries were
        assert evaluate(["--model", str(tmp_path / "m"), "--pairs", str(pairs), "--bootstrap", "20",
                         "--passage-vectors", str(vectors), "--out", str(tmp_path / "ev")]) == 0
        assert not set(texts) & set(srv.embedded)
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["encoder"] == "openai:fake-embed"


def test_missing_ids_and_another_dimension_exit_2_naming_the_file(qa, tmp_path, capsys):
    from projector.train.stage import main as train

    pairs, ids, texts = qa
    with FakeOpenAI() as srv:
        short = _export(tmp_path / "short.parquet", ids[1:], [srv.vector(t) for t in texts[1:]])
        capsys.readouterr()
        assert train(_args(pairs, tmp_path / "m", srv, short)) == 2
        err = capsys.readouterr().err.strip()
        assert "no vector for 1 of the 60 passages" in err and "short.parquet" in err and "\n" not in err
        wide = _export(tmp_path / "wide.parquet", ids, [srv.vector(t) + [0.0] for t in texts])
        embed_first = train(_args(pairs, tmp_path / "w0", srv, _export(tmp_path / "ok.parquet", ids,
                                                                       [srv.vector(t) for t in texts])))
        assert embed_first == 0  # now the cache knows the encoder's dimension (8)
        assert train(_args(pairs, tmp_path / "w", srv, wide)) == 2
        assert "holds 9-d vectors" in capsys.readouterr().err


def test_read_vectors_jsonl_named_columns_and_bad_rows(tmp_path):
    f = tmp_path / "v.jsonl"
    f.write_text('{"doc": "a", "emb": [1, 2]}\n{"doc": "b", "emb": [3, 4]}\n')
    ids, x = read_vectors(f, "doc,emb")
    assert ids == ["a", "b"] and x.tolist() == [[1, 2], [3, 4]]
    f.write_text('{"doc": "a", "emb": [1, 2]}\n{"doc": "b", "emb": [3]}\n')
    with pytest.raises(Exception, match="vectors of one length"):
        read_vectors(f, "doc,emb")
    with pytest.raises(Exception, match="needs 'id' and 'vector'"):
        read_vectors(_export(tmp_path / "p.parquet", ["a"], [[1.0]], "pid", "v"))
