"""Evaluation: the evaluators agree with reference implementations; the CLI writes a full report on tiny real data
(the metric functions themselves: tests/test_metrics.py)."""
import json

import numpy as np
import pytest
import torch

from projector.evaluate import baselines as B
from projector.evaluate import stage as E
from projector.evaluate.data import load_qa
from projector.evaluate.evaluators import RetrievalEvaluator
from projector.formats.pairs import load_split
from projector.errors import DataError


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def toy():
    """60 queries, 150 passages; query i is a noisy copy of passage i (and of i+75 for every third query)."""
    rng = np.random.default_rng(0)
    d = _unit(rng.normal(size=(150, 16))).astype(np.float32)
    q = _unit(d[:60] + 0.9 * rng.normal(size=(60, 16))).astype(np.float32)
    qrels = [{i, i + 75} if i % 3 == 0 else {i} for i in range(60)]
    return q, d, qrels


class _Precomputed:
    """A stand-in SentenceTransformer for sentence-transformers' evaluator: texts are keys of fixed vectors."""

    def __init__(self, vectors):
        self.vectors = vectors

    def _enc(self, texts, **kw):
        return torch.tensor(np.stack([self.vectors[t] for t in texts]))

    encode_query = encode_document = _enc


def test_retrieval_matches_sentence_transformers(toy):
    try:   # sentence-transformers >= 6 moved it; 3.x-5.x have only the old path
        from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    except ImportError:
        from sentence_transformers.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.util import cos_sim

    q, d, qrels = toy
    ours = RetrievalEvaluator(q, d, qrels, chunk=7)(B.Cosine().fit(d))
    vectors = {f"q{i}": v for i, v in enumerate(q)} | {f"d{j}": v for j, v in enumerate(d)}
    st = InformationRetrievalEvaluator(
        {f"q{i}": f"q{i}" for i in range(len(q))}, {f"d{j}": f"d{j}" for j in range(len(d))},
        {f"q{i}": {f"d{j}" for j in rel} for i, rel in enumerate(qrels)}, score_functions={"cos": cos_sim},
        accuracy_at_k=[1], precision_recall_at_k=[1, 5, 10, 100], write_csv=False)
    ref = st.compute_all_metrics(_Precomputed(vectors))["cos"]
    assert ours["ndcg@10"] == pytest.approx(ref["ndcg@k"][10], abs=1e-6)
    assert ours["mrr@10"] == pytest.approx(ref["mrr@k"][10], abs=1e-6)
    assert ours["map@100"] == pytest.approx(ref["map@k"][100], abs=1e-6)
    assert ours["accuracy@1"] == pytest.approx(ref["accuracy@k"][1], abs=1e-6)
    for k in (1, 5, 10, 100):
        assert ours[f"recall@{k}"] == pytest.approx(ref["recall@k"][k], abs=1e-6)
    assert 0.1 < ours["ndcg@10"] < 0.95   # the toy is neither trivial nor hopeless


def test_perfect_scorer_scores_one(toy):
    q, d, qrels = toy

    class Oracle:
        def score(self, qe, de):   # rows of q are identified by matching vectors
            idx = [int(np.argmax((q @ v))) for v in qe]
            return np.array([[1.0 if j in qrels[i] else 0.0 for j in range(len(de))] for i in idx])

    m = RetrievalEvaluator(q, d, qrels)(Oracle())
    assert m["ndcg@10"] == pytest.approx(1) and m["mrr@10"] == pytest.approx(1) and m["recall@10"] == 1


# ------------------------------------------------------------------------------ CLI on tiny real data
TEXTS = [
    ("How do I open a file for reading?", "Use open(path) to read a file; the default mode 'r' reads text."),
    ("How can I sort a list in place?", "list.sort() sorts the list in place; sorted() returns a new list."),
    ("What does a dictionary store?", "A dict maps hashable keys to values and keeps insertion order."),
    ("How do I start a thread?", "threading.Thread(target=f).start() runs f in a new thread."),
    ("How do I parse JSON text?", "json.loads turns a JSON string into Python objects."),
    ("How do I make a directory?", "os.makedirs creates a directory and its missing parents."),
    ("What is a generator?", "A generator function uses yield to produce values lazily, one at a time."),
    ("How do I measure elapsed time?", "time.perf_counter gives a high-resolution clock for timing code."),
]
EXTRA = ["Regular expressions are compiled with re.compile.", "The csv module reads comma-separated files.",
         "math.sqrt returns the square root of a number.", "Sockets connect processes over a network."]


@pytest.fixture
def beir(tmp_path):
    d = tmp_path / "beir"
    (d / "qrels").mkdir(parents=True)
    docs = [t for _, t in TEXTS] + EXTRA
    (d / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": t}) + "\n"
                                            for i, t in enumerate(docs)))
    (d / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": q}) + "\n"
                                             for i, (q, _) in enumerate(TEXTS)))
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                          "".join(f"q{i}\td{i}\t1\n" for i in range(len(TEXTS))))
    return d


def _pairs_folder(path, task, splits):
    import datasets

    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({"format": "projector.formats.pairs", "task": task}))
    passages = [{"passage_id": f"p{i}", "doc_id": f"doc{i}", "title": "", "text": t}
                for i, t in enumerate([t for _, t in TEXTS] + EXTRA)]
    (path / "passages.jsonl").write_text("".join(json.dumps(p) + "\n" for p in passages))
    datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()}).save_to_disk(
        str(path / "dataset"))
    return path


@pytest.fixture
def qa_pairs(tmp_path):
    rows = [{"query": q, "passage": t, "passage_id": f"p{i}", "doc_id": f"doc{i}"} for i, (q, t) in enumerate(TEXTS)]
    return _pairs_folder(tmp_path / "qa", "qa", {"train": rows[:4], "validation": rows[4:5], "test": rows[5:]})


@pytest.fixture
def labelled_pairs(tmp_path):
    docs = [t for _, t in TEXTS]
    rows = [{"text_a": q, "text_b": t, "id_a": "a", "id_b": "b", "label": 1, "reason": ""} for q, t in TEXTS]
    rows += [{"text_a": TEXTS[i][0], "text_b": docs[(i + 3) % 8], "id_a": "a", "id_b": "b", "label": 0,
              "reason": ""} for i in range(8)]
    split = {"train": rows[0:3] + rows[8:11], "validation": rows[3:5] + rows[11:13], "test": rows[5:8] + rows[13:16]}
    return _pairs_folder(tmp_path / "lab", "pairs", split)


def test_cli_beir_baselines(beir, tmp_path, capsys):
    out = tmp_path / "out"
    assert E.main(["--beir", str(beir), "--out", str(out), "--bootstrap", "50"]) == 0
    rep = json.loads((out / "report.json").read_text())
    names = [r["name"] for r in rep["rows"]]
    assert names[0] == "cosine" and "zca-whitening" in names and "closed-form" not in names  # no training pairs
    cos = rep["rows"][0]
    assert cos["metrics"]["ndcg@10"] > 0.7            # these questions are easy for MiniLM
    assert cos["calibration_note"] and not cos["calibration"]
    assert rep["data"]["queries"] == 8 and rep["data"]["corpus"] == 12
    assert (out / "metrics.png").stat().st_size > 1000 and (out / "scores.png").is_file()
    assert "| cosine |" in (out / "report.md").read_text() and "| cosine |" in capsys.readouterr().out


def test_cli_qa_pairs_with_closed_form(qa_pairs, tmp_path):
    out = tmp_path / "out"
    assert E.main(["--pairs", str(qa_pairs), "--out", str(out), "--bootstrap", "50"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["rows"][-1]["name"] == "closed-form"
    assert rep["data"]["queries"] == 3 and rep["data"]["corpus"] == 12   # test queries against the whole corpus
    assert rep["rows"][0]["delta_vs_cosine"]["ndcg@10"]["delta"] == 0


def test_cli_labelled_pairs_with_symmetric_model(labelled_pairs, tmp_path):
    from projector.train import stage as train

    model = tmp_path / "sym"
    assert train.main(["--pairs", str(labelled_pairs), "--out", str(model), "--epochs", "2",
                       "--no-sentence-transformers"]) == 0
    out = tmp_path / "out"
    before = sorted(p.name for p in (labelled_pairs / "dataset" / "train").iterdir())
    assert E.main(["--pairs", str(labelled_pairs), "--model", str(model), "--out", str(out), "--bootstrap", "50"]) == 0
    assert sorted(p.name for p in (labelled_pairs / "dataset" / "train").iterdir()) == before   # input untouched
    rep = json.loads((out / "report.json").read_text())
    rows = {r["name"]: r for r in rep["rows"]}
    assert rep["task"] == "pairs" and rows["cosine"]["metrics"]["roc_auc"] > 0.8
    assert {"roc_auc", "average_precision", "accuracy", "threshold"} <= set(rows["cosine"]["metrics"])
    assert "closed-form" in rows and "calibration_note" in rows["closed-form"]
    assert {"logloss", "brier", "ece@15"} <= set(rows["sym"]["calibration"])
    lo, hi = rows["sym"]["delta_vs_cosine"]["roc_auc"]["ci95"]
    assert lo <= rows["sym"]["delta_vs_cosine"]["roc_auc"]["delta"] <= hi


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert E.main(["--out", str(tmp_path)]) == 2
    assert "--pairs DIR" in capsys.readouterr().err
    assert E.main(["--beir", str(tmp_path / "nope")]) == 2
    assert "corpus.jsonl not found" in capsys.readouterr().err


def test_cli_with_trained_model_through_the_real_loader(qa_pairs, tmp_path):
    """A model trained by projector.train (with a query template) is a row scored on its own embeddings."""
    import projector
    from projector.train import stage as train
    from projector.embed.embedding import embed

    model = tmp_path / "model"
    assert train.main(["--pairs", str(qa_pairs), "--out", str(model), "--epochs", "3",
                       "--query-template", "question: {text}", "--no-sentence-transformers"]) == 0
    out = tmp_path / "out"
    assert E.main(["--model", str(model), "--pairs", str(qa_pairs), "--out", str(out), "--bootstrap", "50"]) == 0
    rep = json.loads((out / "report.json").read_text())
    row = rep["rows"][-1]
    assert row["name"] == "model" and row["kind"] == "model"
    assert {"logloss", "brier", "ece@15"} <= set(row["calibration"]) and "calibration_note" not in row
    assert sum(row["reliability"]["count"]) == rep["data"]["calibration_pairs"]
    # the same number recomputed by hand: templated query embeddings, untemplated passages
    data = load_qa(str(qa_pairs), "test", None)
    q = embed(data.queries, template="question: {text}", show_progress=False)
    d = embed(data.corpus, show_progress=False)
    want = RetrievalEvaluator(q, d, data.qrels)(projector.load(model))
    assert row["metrics"]["ndcg@10"] == pytest.approx(want["ndcg@10"])
    for png in ("metrics.png", "deltas.png", "reliability.png", "scores.png", "training.png"):
        assert (out / png).stat().st_size > 1000, png
    assert "| model |" in (out / "report.md").read_text()


def test_corpus_override_and_unknown_ids(qa_pairs, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    docs = [{"_id": f"p{i}", "title": "", "text": t} for i, t in enumerate([t for _, t in TEXTS] + EXTRA)]
    docs.append({"_id": "x", "title": "Bonus", "text": "An unrelated passage about gardening tools."})
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    data = load_qa(str(qa_pairs), "test", str(corpus))
    assert len(data.corpus) == 13 and data.corpus[-1] == "Bonus\nAn unrelated passage about gardening tools."
    assert [data.corpus_ids[next(iter(r))] for r in data.qrels] == ["p5", "p6", "p7"]
    corpus.write_text(json.dumps({"_id": "zz", "title": "", "text": "nothing"}) + "\n")
    with pytest.raises(DataError, match="--corpus must contain"):
        load_qa(str(qa_pairs), "test", str(corpus))
    with pytest.raises(DataError, match="choose one of"):
        load_split(str(qa_pairs), "dev")
