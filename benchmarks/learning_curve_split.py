"""The learning curve's fixed split of a real-query set, and the files cut from its train half.

    folder, data, split = load_set("nq-wiki")     # a known benchmark name or a BEIR folder; HalfSplit of SPLIT_RULE
    scored = test_half(data, split)               # the only queries any row is scored on
    write_corpus("nq-wiki", Path("runs/learning-curve/nq-wiki-train.jsonl"))   # what projector generate reads

The passages that have real queries (qrels) fall into a train half and a test half by a seeded hash of their
id (``SPLIT_RULE``), so the split never moves; every real query belongs to the half of its passage. Nothing
trains or validates on a test-half query. ``benchmarks/learning_curve.py`` runs the rows on it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from siblings import load  # benchmarks/ is on sys.path: learning_curve.py put it there

from projector.errors import DataError
from projector.evaluate.data import RetrievalData, load_beir
from projector.files import write_text
from projector.formats.corpus import normalise_for_dedup, read_jsonl

SPLIT_SEED = 0          # fixed once: changing it moves every passage, and every committed figure with it
SPLIT_SALT = "learning-curve"
TRAIN_SHARE = 0.5       # share of the judged passages in the train half
EXAMPLES_SEED = 1       # which train-half queries `examples` picks
SPLIT_RULE = ("a passage with a real query is in the train half iff int(sha256('learning-curve:SEED:' + KEY)"
              ".hexdigest()[:16], 16) < 0.5 * 2**64, KEY = the first corpus _id (corpus.jsonl order) among the "
              "passages whose text is the same under projector.formats.corpus.normalise_for_dedup (near-duplicates share "
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


def split_set(data: RetrievalData, seed: int = SPLIT_SEED) -> HalfSplit:
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


def test_half(data: RetrievalData, split: HalfSplit) -> RetrievalData:
    """The scored data: the test-half real queries, ranked against the whole corpus."""
    return RetrievalData(f"{data.name}-test-half", [data.queries[i] for i in split.test_queries], data.corpus_ids,
                           data.corpus, [data.qrels[i] for i in split.test_queries])


# ---------------------------------------------------------------------------------------------- sets


def set_key(name: str) -> str:
    """The set's name in results: a known name as given, a folder by its own name."""
    return Path(name).name if (Path(name) / "corpus.jsonl").is_file() else name


def set_folder(name: str) -> Path:
    """A BEIR folder given as a path, else the known benchmark of that name."""
    if (Path(name) / "corpus.jsonl").is_file():
        return Path(name)
    build = load("build")
    try:
        return build.benchmark_dir(name)
    except ValueError as e:
        raise DataError(f"{name}: not a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv) and {e}") from None
    except build.BuildError as e:
        raise DataError(f"{name}: {e}") from None


def load_set(name: str) -> tuple[Path, RetrievalData, HalfSplit]:
    folder = set_folder(name)
    data = load_beir(str(folder))
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


def example_queries(data: RetrievalData, split: HalfSplit, n: int, seed: int = EXAMPLES_SEED) -> list[tuple[str, str]]:
    """n real train-half queries, a seeded sample (one line each: inner line breaks become spaces), each with the
    text of its first relevant passage (corpus order)."""
    pick = np.random.default_rng(seed).permutation(len(split.train_queries))[:n]
    queries = [split.train_queries[i] for i in pick]
    return [(" ".join(data.queries[q].split()), data.corpus[min(data.qrels[q])]) for q in queries]


def write_examples(name: str, out: Path, n: int) -> list[str]:
    """OUT: the examples, one query a line, or for OUT.jsonl one ``{"query", "passage"}`` object a line."""
    _, data, split = load_set(name)
    if n < 1:
        raise DataError(f"--n must be >= 1, got {n}")
    examples = example_queries(data, split, n)
    if out.suffix == ".jsonl":
        write_text(out, "".join(json.dumps({"query": q, "passage": p}, ensure_ascii=False) + "\n" for q, p in examples))
    else:
        write_text(out, "".join(q + "\n" for q, _ in examples))
    return [q for q, _ in examples]
