"""The learning curve (issue 11, piece 6): LLM-made vs real training queries at equal counts, on the same passages.

    python benchmarks/learning_curve.py corpus nq-wiki runs/learning-curve/nq-wiki-train.jsonl
    python benchmarks/learning_curve.py examples nq-wiki runs/learning-curve/nq-wiki-examples.txt --n 6

This file owns the fixed split of a real-query set (``split_set``): the passages that have real queries
(qrels) fall into a train half and a test half by a seeded hash of their id (``SPLIT_RULE``), so the split
never moves; every real query belongs to the half of its passage. Nothing trains or validates on a
test-half query; every row is scored on the test-half queries against the whole corpus.

``corpus SET OUT.jsonl`` writes the train-half passages (BEIR corpus rows ``_id``, ``title``, ``text``) as the
corpus ``projector generate`` makes LLM questions from; ``examples SET OUT.txt --n 6`` writes a seeded handful
of real train-half queries, one a line (style examples for generate's ``--query-examples``).

SET is a known benchmark name (``benchmarks/build.py``'s ``benchmark_dir``: nq-wiki, debdesc, ...) or a
folder in BEIR layout (corpus.jsonl, queries.jsonl, qrels/test.tsv).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from projector import cli  # noqa: E402
from projector import evaluate as E  # noqa: E402
from projector.corpus import normalise_for_dedup, read_jsonl  # noqa: E402
from projector.errors import DataError  # noqa: E402
from projector.files import write_text  # noqa: E402

# ---------------------------------------------------------------------------------------------- the split

SPLIT_SEED = 0          # fixed once: changing it moves every passage, and every committed figure with it
SPLIT_SALT = "learning-curve"
TRAIN_SHARE = 0.5       # share of the judged passages in the train half
EXAMPLES_SEED = 1       # which train-half queries `examples` picks
SPLIT_RULE = ("a passage with a real query is in the train half iff int(sha256('learning-curve:SEED:' + KEY)"
              ".hexdigest()[:16], 16) < 0.5 * 2**64, KEY = the first corpus _id (corpus.jsonl order) among the "
              "passages whose text is the same under projector.corpus.normalise_for_dedup (near-duplicates share "
              "a half); a real query belongs to the half of its relevant passages (both halves: dropped); a "
              "train-half query whose text is also a test-half query's is dropped")


@dataclass
class HalfSplit:
    """A set's fixed split; rows index the set's ``RetrievalData`` (corpus rows, query rows)."""

    seed: int
    train_passages: list[int]   # corpus rows with a real query, train half
    test_passages: list[int]
    train_queries: list[int]    # query rows whose relevant passages are all train-half
    test_queries: list[int]     # query rows whose relevant passages are all test-half: the only ones scored
    dropped_queries: int        # relevant passages in both halves, or the text of a test query

    def summary(self) -> dict:
        return {"rule": SPLIT_RULE.replace("SEED", str(self.seed)), "seed": self.seed,
                "passages": {"train": len(self.train_passages), "test": len(self.test_passages)},
                "queries": {"train": len(self.train_queries), "test": len(self.test_queries),
                            "dropped": self.dropped_queries}}


def in_train_half(key: str, seed: int = SPLIT_SEED) -> bool:
    h = hashlib.sha256(f"{SPLIT_SALT}:{seed}:{key}".encode()).hexdigest()
    return int(h[:16], 16) < TRAIN_SHARE * 2**64


def split_set(data: E.RetrievalData, seed: int = SPLIT_SEED) -> HalfSplit:
    """The split of SPLIT_RULE: a function of the corpus ids, texts and qrels only."""
    first: dict[str, str] = {}
    key = [first.setdefault(normalise_for_dedup(text), cid) for cid, text in zip(data.corpus_ids, data.corpus)]
    judged = sorted(set().union(*data.qrels))
    train_side = {r: in_train_half(key[r], seed) for r in judged}
    train_q, test_q, dropped = [], [], 0
    for i, rel in enumerate(data.qrels):
        sides = {train_side[r] for r in rel}
        if sides == {True}:
            train_q.append(i)
        elif sides == {False}:
            test_q.append(i)
        else:
            dropped += 1
    test_texts = {data.queries[i] for i in test_q}
    kept = [i for i in train_q if data.queries[i] not in test_texts]
    return HalfSplit(seed, [r for r in judged if train_side[r]], [r for r in judged if not train_side[r]],
                     kept, test_q, dropped + len(train_q) - len(kept))


def test_half(data: E.RetrievalData, split: HalfSplit) -> E.RetrievalData:
    """The scored data: the test-half real queries, ranked against the whole corpus."""
    return E.RetrievalData(f"{data.name}-test-half", [data.queries[i] for i in split.test_queries], data.corpus_ids,
                           data.corpus, [data.qrels[i] for i in split.test_queries])


# ---------------------------------------------------------------------------------------------- sets


def _build_module():
    """benchmarks/build.py as module ``benchmarks_build`` (benchmarks/ is not a package)."""
    if "benchmarks_build" not in sys.modules:
        spec = importlib.util.spec_from_file_location("benchmarks_build", REPO / "benchmarks" / "build.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules["benchmarks_build"] = mod
    return sys.modules["benchmarks_build"]


def set_folder(name: str) -> Path:
    """A BEIR folder given as a path, else the known benchmark of that name."""
    if (Path(name) / "corpus.jsonl").is_file():
        return Path(name)
    build = _build_module()
    try:
        return build.benchmark_dir(name)
    except ValueError as e:
        raise DataError(f"{name}: not a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv) and {e}") from None
    except build.BuildError as e:
        raise DataError(f"{name}: {e}") from None


def load_set(name: str) -> tuple[Path, E.RetrievalData, HalfSplit]:
    folder = set_folder(name)
    data = E.load_beir(str(folder))
    return folder, data, split_set(data)


# ---------------------------------------------------------------------------------------------- corpus, examples


def write_corpus(name: str, out: Path) -> dict:
    """OUT.jsonl: the train-half passages as BEIR corpus rows, in corpus order (input of ``projector generate``)."""
    folder, data, split = load_set(name)
    keep = {data.corpus_ids[r] for r in split.train_passages}
    rows = [row for _, row in read_jsonl(folder / "corpus.jsonl", error=DataError) if str(row["_id"]) in keep]
    write_text(out, "".join(json.dumps({"_id": str(r["_id"]), "title": r.get("title", ""), "text": r["text"]},
                                       ensure_ascii=False) + "\n" for r in rows))
    return {"written": len(rows), **split.summary()}


def example_queries(data: E.RetrievalData, split: HalfSplit, n: int, seed: int = EXAMPLES_SEED) -> list[str]:
    """n real train-half queries, a seeded sample (one line each: inner line breaks become spaces)."""
    pick = np.random.default_rng(seed).permutation(len(split.train_queries))[:n]
    return [" ".join(data.queries[split.train_queries[i]].split()) for i in pick]


def write_examples(name: str, out: Path, n: int) -> list[str]:
    _, data, split = load_set(name)
    if n < 1:
        raise DataError(f"--n must be >= 1, got {n}")
    queries = example_queries(data, split, n)
    write_text(out, "".join(q + "\n" for q in queries))
    return queries


# ---------------------------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/learning_curve.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("corpus", help="the train-half passages as a corpus file for projector generate")
    c.add_argument("set")
    c.add_argument("out", type=Path)
    x = sub.add_parser("examples", help="a seeded handful of real train-half queries, one a line")
    x.add_argument("set")
    x.add_argument("out", type=Path)
    x.add_argument("--n", type=int, default=6)

    def run(a):
        a = p.parse_args(a)
        if a.command == "corpus":
            s = write_corpus(a.set, a.out)
            print(f"{a.out}: {s['written']} train-half passages of {a.set} (test half: {s['passages']['test']} "
                  f"passages, {s['queries']['test']} real queries, never trained on)")
        else:
            for q in write_examples(a.set, a.out, a.n):
                print(q)
            print(f"{a.out}: {a.n} real train-half queries of {a.set}")

    return cli.run(run, "learning-curve", argv)


if __name__ == "__main__":
    raise SystemExit(main())
