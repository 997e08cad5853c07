"""benchmarks/endpoint_encoder.py's own parts: the nq-wiki subsample, the targets as printed, the server it starts
and stops by PID (the bundled MiniLM over HTTP, a real server; seconds)."""
import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "endpoint_encoder.py"
_spec = importlib.util.spec_from_file_location("benchmarks_endpoint_encoder", _PATH)
ee = importlib.util.module_from_spec(_spec)
sys.modules["benchmarks_endpoint_encoder"] = ee
_spec.loader.exec_module(ee)

from projector.evaluate import stage as E  # noqa: E402
from projector.formats import pairs as P  # noqa: E402


def _pairs(root: Path, n: int = 40, asked: int = 6) -> Path:
    """A qa pairs folder of N one-passage documents; the first ASKED passages have LLM questions."""
    from datasets import Dataset, DatasetDict

    root.mkdir(parents=True)
    passages = [{"passage_id": f"d{i}#0", "doc_id": f"d{i}", "title": "", "text": f"text {i}"} for i in range(n)]
    split = lambda i: "train" if i < asked - 2 else "validation" if i < asked - 1 else "test"  # noqa: E731
    rows = {s: [{"query": f"llm question {i}", "passage": f"text {i}", "passage_id": f"d{i}#0", "doc_id": f"d{i}",
                 "title": "", "question_index": 0}
                for i in range(asked) if split(i) == s] for s in ("train", "validation", "test")}
    (root / "passages.jsonl").write_text("".join(json.dumps(p) + "\n" for p in passages))
    DatasetDict({k: Dataset.from_list(v) for k, v in rows.items()}).save_to_disk(str(root / "dataset"))
    (root / "manifest.json").write_text(json.dumps({"task": "qa", "rewrite": None, "corpus_fingerprint": "test"}))
    return root


def test_subsample_keeps_every_asked_passage_and_the_queries_whose_passage_stayed(tmp_path):
    src = _pairs(tmp_path / "pairs")
    beir = E.RetrievalData("set", [f"real {i}" for i in range(40)], [f"d{i}" for i in range(40)],
                           [f"text {i}" for i in range(40)], [{i} for i in range(40)])
    dst, data, info = ee.subsample(src, beir, 15, 0, tmp_path / "sub")
    kept = [p.passage_id for p in P.read_passages(dst / P.PASSAGES)]
    assert len(kept) == 15 and {f"d{i}#0" for i in range(6)} <= set(kept)
    assert len(data.corpus) == 15 and len(data.queries) == 15 and info["queries"] == 15
    for q, rel in zip(data.queries, data.qrels):  # every real query still points at its own passage
        assert [data.corpus[r] for r in rel] == [q.replace("real", "text")]
    assert len(P.read_rows(dst)) == len(P.read_rows(src)) == 6 and P.load_pairs(dst).task == "qa"
    assert "the 6 the pairs folder has questions for + 9 drawn" in info["subsample"]
    assert "6 of them ask about a passage the LLM wrote questions for" in info["subsample"]
    again = ee.subsample(src, beir, 15, 0, tmp_path / "sub2")[1]
    assert again.corpus_ids == data.corpus_ids  # seeded: the same draw


def test_targets_say_met_missed_and_not_measured_with_the_numbers():
    a = {"texts": 10, "passages": 5, "queries": 5, "max_abs_diff": 2e-7, "ndcg@10": {"in_process": 0.8, "http": 0.8},
         "ndcg_identical": True, "in_process_texts_s": 100.0, "http_texts_s": 70.0, "speed_ratio": 0.7,
         "rounds": [{"in_process_texts_s": 100.0, "http_texts_s": 60.0}, {"in_process_texts_s": 90.0,
                                                                          "http_texts_s": 85.0}], "setup": "s"}
    second = {"delta": -0.02, "delta_ci95": [-0.03, -0.01], "gain_pct": -2.5, "selected": "trained",
              "below_cosine_beyond_noise": True, "cosine_ndcg@10": 0.8, "projector_ndcg@10": 0.78}
    ref = {**second, "below_cosine_beyond_noise": False, "delta": 0.0, "delta_ci95": [0.0, 0.0], "gain_pct": 0.0}
    state = {"minilm": a, "faq-perl-debian": {"data": {"subsample": None, "queries": 5, "passages": 5},
                                               "train_pairs": 3, ee.SECOND: second, ee.MINILM: ref}}
    t = ee.targets(state)
    got = {x["target"]: x for x in t}
    speed = got[f"HTTP throughput >= {ee.TARGET_SPEED:.0%} of in-process"]
    assert speed["met"] is True and "85.0 vs 100.0 texts/s = 85%" in speed["detail"]  # best round of each side
    assert [ee.verdict(x) for x in t] == ["MET", "MET", "MET", "MISSED", "NOT MEASURED"]
    state["targets"] = t
    md = ee.markdown(state, type("C", (), {"nq_docs": 1000, "bootstrap": 1000})())
    assert "- MISSED: all-mpnet-base-v2: exported map not below its cosine beyond noise (faq-perl-debian)" in md
    assert "Not measured in this run: nq-wiki." in md


def test_the_served_encoder_answers_and_is_stopped_by_its_pid(tmp_path):
    from projector.embed import endpoint
    from projector.embed.embedding import embed

    with ee.served(None, ee.MINILM, tmp_path / "serve.log") as (url, pid):
        endpoint.configure(f"openai:{ee.MINILM}", base_url=url)
        x = embed(["a question", "an answer"], f"openai:{ee.MINILM}", cache_dir=False, show_progress=False)
        local = embed(["a question", "an answer"], None, cache_dir=False, show_progress=False)
        assert np.abs(x - local).max() < 1e-5
        assert "projector.embed.serve" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    assert not Path(f"/proc/{pid}").exists()  # stopped and reaped
