"""benchmarks/compare.py on a tiny synthetic set: no encoder, no anchors, no LLM (seconds)."""
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "compare.py"
_spec = importlib.util.spec_from_file_location("benchmarks_compare", _PATH)
compare = importlib.util.module_from_spec(_spec)
sys.modules["benchmarks_compare"] = compare   # dataclasses look their module up while the file executes
_spec.loader.exec_module(compare)

from projector.evaluate import baselines as B  # noqa: E402
from projector.evaluate import stage as E  # noqa: E402
from projector.evaluate.data import RetrievalData  # noqa: E402
from projector.formats import pairs as P  # noqa: E402

D = 16


class FakeEmbedder:
    """Deterministic unit vectors per text: documents share a direction with 'about N' queries."""

    def __call__(self, texts, template):
        out = []
        for t in texts:
            topic = int(t.split()[-1]) if t.split()[-1].isdigit() else 0
            rng = np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16))
            base = np.random.default_rng(topic).normal(size=D)
            out.append(base + 0.3 * rng.normal(size=D))
        x = np.asarray(out, dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)


class Sigmoid:
    """A scorer with probability(), standing in for a trained projection."""

    def score(self, q, d):
        return 20 * (np.asarray(q) @ np.asarray(d).T) - 10

    def probability(self, q, d):
        return 1 / (1 + np.exp(-self.score(q, d)))


def make_pairs(root: Path, n_docs: int = 12) -> Path:
    """A qa pairs folder through the format's own writers: 8 train passages (3 questions each), 2 validation
    and 2 test (2 each)."""
    from projector.formats.corpus import Passage

    root.mkdir(parents=True)
    (root / "manifest.json").write_text(json.dumps({"task": "qa", "corpus_fingerprint": "x"}))
    passages = [Passage(f"d{i}#0", f"d{i}", f"passage about {i}", title="") for i in range(n_docs)]
    P.write_passages(passages, root / "passages.jsonl")
    split = lambda i: "train" if i < 8 else "validation" if i < 10 else "test"
    rows = [r for i, p in enumerate(passages)
            for r in P.qa_rows(p, [f"question {j} about {i}" for j in range(3 if i < 8 else 2)], split(i))]
    P.write_dataset(rows, root, "qa")
    return root


def beir(n_docs: int = 12) -> RetrievalData:
    return RetrievalData("tiny", [f"real query about {i}" for i in range(n_docs)], [f"d{i}" for i in range(n_docs)],
                           [f"passage about {i}" for i in range(n_docs)], [{i} for i in range(n_docs)])


def test_missing_pairs_are_skipped_with_a_reason(tmp_path):
    assert "generation not finished" in compare.pairs_ready(tmp_path)
    cfg = compare.CompareConfig(sets=["nq-wiki"], pairs_root=str(tmp_path), out=str(tmp_path / "out"))
    assert compare.compare_set("nq-wiki", cfg, tmp_path) is None


def test_train_pairs_cap_and_subset(tmp_path):
    from datasets import load_from_disk

    from projector.formats.pairs import load_pairs

    src = make_pairs(tmp_path / "pairs")
    pairs = load_pairs(src)
    rows = compare.train_pairs(pairs, 5, seed=0)
    assert len(rows) == 5 and rows == compare.train_pairs(pairs, 5, seed=0)
    assert len(compare.train_pairs(pairs, None, 0)) == 24
    sub = compare.subset_pairs(src, tmp_path / "sub", rows)
    dd = load_from_disk(str(sub / "dataset"))
    assert sorted(zip(dd["train"]["query"], dd["train"]["passage_id"])) == sorted(rows)
    assert len(dd["validation"]) == 4 and (sub / "passages.jsonl").read_text() == (src / "passages.jsonl").read_text()


def test_evaluate_all_table_targets_and_files(tmp_path):
    pairs_dir = make_pairs(tmp_path / "pairs")
    data, emb = beir(), FakeEmbedder()
    d = emb(data.corpus, None)
    results = [{"name": "cosine", "kind": "baseline", "scorer": B.Cosine().fit(d),
                "cost": {"wall_s": 0.01, "peak_mb": 1.0, "memory": "tracemalloc"}},
               {"name": "projector asym k=d", "kind": "projector", "scorer": Sigmoid(),
                "cost": {"wall_s": 2.0, "peak_mb": 900.0, "memory": "child peak RSS (VmHWM)"}},
               {"name": "projector asym k=d, 2 epochs fixed", "kind": "projector", "scorer": Sigmoid(),
                "cost": {"wall_s": 1.0, "peak_mb": 900.0, "memory": "child peak RSS (VmHWM)"}},
               {"name": "LlamaIndex linear adapter, 2 epochs", "kind": "anchor", "scorer": B.Cosine().fit(d),
                "cost": {"wall_s": 30.0, "peak_mb": 1200.0, "memory": "child peak RSS (VmHWM)"}},
               {"name": "sentence-transformers full fine-tune", "kind": "anchor",
                "embeddings": (emb(data.queries, None), d), "cost": {"wall_s": 60.0, "peak_mb": 2000.0}},
               {"name": "broken anchor", "kind": "anchor", "error": "not installed (ImportError: x)"}]
    cfg = compare.CompareConfig(bootstrap=20)
    info = {"embed_once_s": 1.0, "embed_once_texts": 40, "import_floor_rss_mb": 800.0, "train_pairs": 24,
            "anchor_pairs": 24, "timed_projector": "projector asym k=d, 2 epochs fixed"}
    res = compare.evaluate_all("tiny", cfg, data, pairs_dir, results, emb, E.EvalConfig(bootstrap=20), info)
    rows = {r["name"]: r for r in res["rows"]}
    assert rows["cosine"]["ece"] is None and 0 <= rows["projector asym k=d"]["ece"] <= 1
    assert rows["projector asym k=d"]["heldout_llm_test"]["ece"] is not None
    assert rows["sentence-transformers full fine-tune"]["metrics"]["ndcg@10"] == pytest.approx(
        rows["cosine"]["metrics"]["ndcg@10"])                   # same vectors, same evaluator
    assert rows["LlamaIndex linear adapter, 2 epochs"]["time_vs_projector"] == 15.0
    targets = {t["target"]: t for t in res["targets"]}
    speed = targets["projector trains >= 10x faster than LlamaIndex (same epochs, data)"]
    assert speed["met"] and speed["value"] == 30.0
    assert "best projector NDCG@10 >= 1.10 x frozen cosine" in targets
    compare.write(res, tmp_path / "out")
    md = (tmp_path / "out" / "tiny.md").read_text()
    assert "| method | NDCG@10 |" in md and "not installed" in md and ("MET" in md or "MISSED" in md)
    written = json.loads((tmp_path / "out" / "tiny.json").read_text())
    assert written["set"] == "tiny" and written["config"]["pairs_root"] == "benchmarks/pairs"   # no machine path


def test_results_record_repo_folders_relative_to_the_repo(tmp_path):
    """A committed NAME.json must not carry the absolute paths of the machine that wrote it."""
    rec = compare.recorded_config(compare.CompareConfig())   # the defaults: folders inside the repo
    assert rec["pairs_root"] == "benchmarks/pairs" and rec["out"] == "benchmarks/results" and rec["work"] is None
    inside = compare.recorded_config(compare.CompareConfig(work=str(compare.REPO / "runs" / "bench")))
    assert inside["work"] == "runs/bench"
    elsewhere = compare.recorded_config(compare.CompareConfig(out=str(tmp_path / "out")))
    assert elsewhere["out"] == str(tmp_path / "out")   # outside the repo: as given
    assert elsewhere["sets"] == ["faq-perl-debian", "nq-wiki"] and elsewhere["bootstrap"] == 1000


def test_scaling_child_in_a_subprocess():
    rows = compare.scaling([600], threads=1, dim=D, epochs=1)
    assert "error" not in rows[0], rows[0]
    assert rows[0]["pairs_per_s"] > 0 and rows[0]["peak_rss_mb"] > 0
    assert "| 600 | 1 × 1 |" in compare.scaling_markdown(rows)


def test_scaling_under_torchrun_sums_the_ranks_memory():
    one = compare.scaling([600], threads=1, dim=D, epochs=1)[0]
    two = compare.scaling([600], threads=1, dim=D, epochs=1, processes=2)[0]
    assert "error" not in two, two
    assert two["processes"] == 2 and two["pairs_per_s"] > 0
    assert two["peak_rss_mb"] > 1.5 * one["peak_rss_mb"]  # two interpreters, each with torch and the data
    assert "| 600 | 2 × 1 |" in compare.scaling_markdown([one, two])
