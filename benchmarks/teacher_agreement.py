"""How well the LLM teacher (``projector teach``) grades, against people's relevance judgments (issue 11, piece 2).

    python benchmarks/teacher_agreement.py nq-wiki --queries 40 --candidates 2
        # -> benchmarks/results/teacher-agreement-nq-wiki.{json,md}

A seeded sample of a set's real train-half queries (``learning_curve.py``'s split: never a test-half query)
becomes a pairs folder of real queries; ``projector teach`` grades each query against its human-judged
relevant passage and against its ``--candidates`` nearest other passages (not judged relevant by people:
mostly true negatives, sometimes unlabelled positives). The figures: the grade histograms of both, the share
of relevant passages the teacher keeps (grade >= keep score) and of candidates it turns into negatives, and the
balanced accuracy. The LLM calls are ``teach``'s own, resumable (records in ``--work``).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from siblings import load  # noqa: E402  (benchmarks/ is not a package)

from projector.files import write_json, write_text  # noqa: E402
from projector.generate.teach import TeachConfig, job_key, teach  # noqa: E402

SEED = 7  # which train-half queries are graded (not the learning curve's validation or first training ones)


def sample_queries(split, n: int, seed: int = SEED) -> list[int]:
    """n train-half query rows, seeded, in a fixed order (a larger n keeps the smaller sample)."""
    order = np.random.default_rng(seed).permutation(len(split.train_queries))
    return [split.train_queries[i] for i in order[:n]]


def agreement(records: dict, data, rows: list[int], keep_score: int) -> dict:
    """Per graded (query, passage): people's label (in the qrels or not) against the teacher's grade."""
    grades = {"relevant": Counter(), "candidate": Counter()}
    for i in rows:
        rel = {data.corpus_ids[r] for r in data.qrels[i]}
        for key, rec in records.items():
            if rec["status"] != "ok" or rec["query"] != data.queries[i]:
                continue
            grades["relevant" if rec["passage_id"] in rel else "candidate"][rec["result"]["score"]] += 1
    kept = sum(v for g, v in grades["relevant"].items() if g >= keep_score)
    negative = sum(v for g, v in grades["candidate"].items() if g < keep_score)
    n_rel, n_cand = sum(grades["relevant"].values()), sum(grades["candidate"].values())
    tpr, tnr = kept / max(n_rel, 1), negative / max(n_cand, 1)
    return {"graded_relevant": n_rel, "graded_candidates": n_cand,
            "grades": {k: {str(g): v[g] for g in range(4)} for k, v in grades.items()},
            "relevant_kept": round(tpr, 3), "candidates_negative": round(tnr, 3),
            "balanced_accuracy": round((tpr + tnr) / 2, 3),
            "always_keep_balanced_accuracy": 0.5}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("set", help="a real-query set known to learning_curve.py (nq-wiki, debdesc) or a BEIR folder")
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--candidates", type=int, default=2)
    ap.add_argument("--keep-score", type=int, default=2)
    ap.add_argument("--work", default=str(REPO / "runs" / "teacher-agreement"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--local-model", default=None)
    ap.add_argument("--prompt-file", default=None, help="a grading prompt to try instead of the packaged one")
    a = ap.parse_args(argv)
    split_mod, row_folders = load("learning_curve_split"), load("learning_curve_folders")
    _, data, split = split_mod.load_set(a.set)
    rows = sample_queries(split, a.queries)
    work = Path(a.work) / (split_mod.set_key(a.set) + (f"-{Path(a.prompt_file).stem}" if a.prompt_file else ""))
    passages = row_folders.train_half_passages(data, split)
    row_folders.write_real_pairs(work / "pairs", data, passages, rows, rows[:2])  # validation: must not be empty
    m = teach(TeachConfig(pairs=str(work / "pairs"), out=str(work / "taught"), candidates=a.candidates,
                          keep_score=a.keep_score, concurrency=1, timeout=600.0, local_model=a.local_model,
                          prompt_file=a.prompt_file))
    records = {}
    for line in (work / "taught" / "records.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        records[rec["key"]] = rec
    assert all(job_key(rec["query"], rec["passage_id"]) == k for k, rec in records.items())
    result = {"set": split_mod.set_key(a.set), "queries": a.queries, "candidates": a.candidates, "keep_score": a.keep_score,
              "model": m["model"], "prompt_version": m["prompt_version"], "cost": m["cost"],
              **agreement(records, data, rows, a.keep_score),
              "command": f"python benchmarks/teacher_agreement.py {a.set} --queries {a.queries} "
                         f"--candidates {a.candidates} --keep-score {a.keep_score}"
                         + (f" --prompt-file {a.prompt_file}" if a.prompt_file else "")}
    out, name = Path(a.out), result["set"] + (f"-{Path(a.prompt_file).stem}" if a.prompt_file else "")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"teacher-agreement-{name}.json", result)
    g = result["grades"]
    write_text(out / f"teacher-agreement-{name}.md", "\n".join([
        f"# LLM teacher vs people: {result['set']} ({result['model']}, prompt {result['prompt_version']})", "",
        f"`{result['command']}`", "",
        f"{a.queries} real train-half queries, each graded (0-3) against its relevant passage (people's label) and "
        f"its {a.candidates} nearest other passages under the frozen encoder (not labelled relevant).", "",
        "| graded | n | 0 | 1 | 2 | 3 | kept (>= %d) |" % a.keep_score, "|---|---|---|---|---|---|---|",
        *(f"| {name} | {sum(g[k].values())} | " + " | ".join(str(g[k][str(i)]) for i in range(4))
          + f" | {sum(g[k][str(i)] for i in range(a.keep_score, 4)) / max(sum(g[k].values()), 1):.2f} |"
          for name, k in (("relevant passage", "relevant"), ("nearest other passages", "candidate"))), "",
        f"Balanced accuracy {result['balanced_accuracy']:.3f} (keeping everything: 0.5). Relevant passages kept "
        f"{result['relevant_kept']:.2f}; candidates made negatives {result['candidates_negative']:.2f}.", "",
        f"Cost: {m['cost']['calls']} calls, {m['cost']['prompt_tokens']} prompt + {m['cost']['completion_tokens']} "
        f"completion tokens, {m['cost']['llm_seconds']} s of requests.", ""]))
    print(json.dumps({k: result[k] for k in ("balanced_accuracy", "relevant_kept", "candidates_negative")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
