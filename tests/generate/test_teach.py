"""teach: the LLM grades generated questions against their passage and their nearest other passages, against a
real HTTP server on 127.0.0.1 (tests/openai_server.py grades 3 when the query names the passage's first word);
train then uses the judged negatives."""
import dataclasses
import json
import re
import subprocess
import sys

import pytest
import torch

from openai_server import FakeOpenAI, passage_of
from projector.formats import pairs as P
from projector.formats.corpus import Passage
from projector.errors import DataError, ProjectorError
from projector.files import write_json
from projector.formats.realqueries import read_real_queries
from projector.generate.teach import TeachConfig, teach
from projector.train.data import embed_pairs
from projector.train.stage import TrainConfig, train

WORDS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "olive", "peach", "plum", "quince"]
SPLIT = {"apple": "train", "banana": "train", "cherry": "train", "grape": "train", "lemon": "train",
         "mango": "train", "olive": "validation", "peach": "validation", "plum": "test", "quince": "train"}


def make_pairs(tmp_path):
    """A qa folder written with projector.formats.pairs' writers: two passages start with "apple" (a false negative for
    each other's queries), one train query no passage answers."""
    passages = [Passage(f"{w}#0", w, f"{w} trees grow in warm valleys and the {w} fruit is eaten fresh.", w.title())
                for w in WORDS]
    passages.append(Passage("apple#1", "apple", "apple orchards need cold winters; an apple keeps for months.", "Apple"))
    by_id = {p.passage_id: p for p in passages}
    rows = []
    for w in WORDS:
        rows += P.qa_rows(by_id[f"{w}#0"], [f"where does {w} grow", f"how is {w} eaten"], SPLIT[w])
    rows += P.qa_rows(by_id["banana#0"], ["price of gold in 1850"], "train")  # its passage does not answer it
    out = tmp_path / "pairs"
    out.mkdir()
    P.write_passages(passages, out / P.PASSAGES)
    P.write_dataset(rows, out, "qa")
    write_json(out / P.MANIFEST, {"format": P.FORMAT, "format_version": P.FORMAT_VERSION, "task": "qa",
                                  "corpus": "fruit", "corpus_fingerprint": "f00d"})
    return out, passages


def config(tmp_path, server, **kw):
    base = dict(pairs=str(tmp_path / "pairs"), out=str(tmp_path / "taught"), base_url=server.base_url,
                model="fake-model", concurrency=1, timeout=5.0, backoff=0.05, candidates=3)
    return TeachConfig(**{**base, **kw})


def first_word(text):
    return text.split()[0].lower()


def test_teach_drops_unanswered_queries_and_adds_judged_negatives(tmp_path):
    _, passages = make_pairs(tmp_path)
    text_of = {p.passage_id: p.text for p in passages}
    with FakeOpenAI() as srv:
        m = teach(config(tmp_path, srv))
        bodies = srv.bodies
    out = tmp_path / "taught"
    pairs = P.load_pairs(out)
    train = pairs.splits["train"]
    assert "price of gold in 1850" not in train["query"]
    assert m["counts"]["dropped"] == {"train": 1, "validation": 0, "test": 0}
    assert len(train["query"]) == 2 * 7 and len(pairs.splits["validation"]["query"]) == 4
    assert all(n == [] for n in pairs.splits["validation"]["negatives"])
    for q, pid, negatives in zip(train["query"], train["passage_id"], train["negatives"]):
        assert pid not in negatives and len(negatives) <= 3
        for n in negatives:  # every judged negative is a passage the grader said does not answer the query
            assert first_word(text_of[n]) not in q.split()
    # "apple" queries: the other apple passage is among the nearest, graded 3: a false negative, never a negative
    apple = [neg for q, neg in zip(train["query"], train["negatives"]) if "apple" in q]
    assert all("apple#1" not in neg for neg in apple)
    assert m["counts"]["false_negatives"] >= 1
    assert m["counts"]["negatives"] == sum(map(len, train["negatives"])) > 0
    # one call per distinct (query, passage), in corpus order so a prefix cache is reused passage by passage
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == len({r["key"] for r in records}) == m["cost"]["calls"] == len(bodies)
    order = [p.passage_id for p in passages]
    asked = [order.index(next(p.passage_id for p in passages if p.text == passage_of(b["messages"][0]["content"])))
             for b in bodies]
    assert asked == sorted(asked)
    prompt = bodies[0]["messages"][0]["content"]
    assert prompt.index("Passage:") < prompt.index("Query:")
    assert bodies[0]["temperature"] == 0.0
    assert m["cost"]["prompt_tokens"] > 0 and m["source"]["corpus"] == "fruit"


def test_rerun_asks_nothing_and_more_candidates_ask_only_the_new_ones(tmp_path):
    make_pairs(tmp_path)
    with FakeOpenAI() as srv:
        first = teach(config(tmp_path, srv, candidates=1))
        n1 = srv.requests
        again = teach(config(tmp_path, srv, candidates=1))
        assert srv.requests == n1 and again["counts"] == first["counts"]
        more = teach(config(tmp_path, srv, candidates=2))
        assert n1 < srv.requests <= n1 + first["counts"]["rows"]["train"]  # one new candidate per train query at most (shared ones once)
    assert more["counts"]["negatives"] >= first["counts"]["negatives"]


def test_out_of_range_grades_are_re_asked_and_a_failed_grade_keeps_the_row(tmp_path):
    make_pairs(tmp_path)
    with FakeOpenAI(faults=["outside"]) as srv:  # re-asked with the error named, then graded
        m = teach(config(tmp_path, srv, candidates=0, out=str(tmp_path / "reasked")))
    assert m["cost"]["failed"] == 0 and m["counts"]["ungraded_kept"] == 0
    with FakeOpenAI(faults=["outside"]) as srv:  # no re-ask allowed: recorded failed
        m = teach(config(tmp_path, srv, candidates=0, max_invalid=1))
    recs = [json.loads(line) for line in (tmp_path / "taught" / "records.jsonl").read_text().splitlines()]
    assert sum(r["status"] == "failed" for r in recs) == 1 and m["cost"]["failed"] == 1
    assert m["counts"]["ungraded_kept"] == 1  # not graded is not "does not answer": kept
    assert "score 7 is not one of" in next(r["error"] for r in recs if r["status"] == "failed")


def test_train_uses_the_judged_negatives(tmp_path):
    make_pairs(tmp_path)
    with FakeOpenAI() as srv:
        teach(config(tmp_path, srv))
    pairs = P.load_pairs(tmp_path / "taught")
    cfg = TrainConfig(pairs=str(tmp_path / "taught"), out=str(tmp_path / "model"))
    data = embed_pairs(pairs, cfg, torch.device("cpu"))
    index = {pid: i for i, pid in enumerate(pairs.passage_ids)}
    want = [sorted(index[n] for n in negs) for negs in pairs.splits["train"]["negatives"]]
    assert [sorted(i for i in row.tolist() if i >= 0) for row in data.negatives] == want
    off = embed_pairs(pairs, TrainConfig(pairs=cfg.pairs, out=cfg.out, judged_negatives=False), torch.device("cpu"))
    assert off.negatives is None
    summary = train(pairs=cfg.pairs, out=cfg.out, epochs=2, batch_size=4, sentence_transformers=False)
    assert summary["selected"] and (tmp_path / "model" / "projector.json").is_file()


def test_kept_llm_train_rows_keep_their_judged_negatives_beside_real_queries(tmp_path):
    """--train-queries with --keep-llm-train: the real queries come first and have no judged negatives (-1 rows);
    the folder's rows after them keep the ones the LLM judged, on the right rows."""
    make_pairs(tmp_path)
    with FakeOpenAI() as srv:
        teach(config(tmp_path, srv))
    users = tmp_path / "users.jsonl"
    users.write_text("".join(json.dumps({"query": f"fresh {w}", "passage_id": f"{w}#0"}) + "\n"
                             for w in ("apple", "grape", "mango")), encoding="utf-8")
    pairs = P.load_pairs(tmp_path / "taught")
    real = read_real_queries(users, P.read_passages(tmp_path / "taught" / P.PASSAGES))
    cfg = TrainConfig(pairs=str(tmp_path / "taught"), out=str(tmp_path / "model"), train_queries=str(users),
                      keep_llm_train=True)
    data = embed_pairs(pairs, cfg, torch.device("cpu"), real_train=real)
    index = {pid: i for i, pid in enumerate(pairs.passage_ids)}
    want = [sorted(index[n] for n in negs) for negs in pairs.splits["train"]["negatives"]]
    assert len(data.negatives) == len(data.q) == 3 + len(want) and sum(map(len, want)) > 0
    assert (data.negatives[:3] == -1).all()
    assert [sorted(i for i in row.tolist() if i >= 0) for row in data.negatives[3:]] == want
    alone = embed_pairs(pairs, dataclasses.replace(cfg, keep_llm_train=False), torch.device("cpu"), real_train=real)
    assert alone.negatives is None and len(alone.q) == 3


def test_bad_inputs_are_one_clear_error(tmp_path, repo):
    make_pairs(tmp_path)
    with FakeOpenAI() as srv:
        with pytest.raises(ProjectorError, match="--keep-score 5"):
            teach(config(tmp_path, srv, keep_score=5))
        with pytest.raises(ProjectorError, match="is the --pairs folder"):
            teach(config(tmp_path, srv, out=str(tmp_path / "pairs")))
        with pytest.raises(DataError, match="manifest.json not found"):
            teach(config(tmp_path, srv, pairs=str(tmp_path / "nothing")))
        with pytest.raises(DataError, match="no train query was graded 2 or more"):
            teach(config(tmp_path, srv, out=str(tmp_path / "strict"), pairs=str(_all_unanswered(tmp_path))))
        teach(config(tmp_path, srv, candidates=0))
        with pytest.raises(ProjectorError, match="a different prompt"):
            teach(config(tmp_path, srv, candidates=0, prompt_file=str(_prompt_copy(tmp_path))))
        r = subprocess.run([sys.executable, "-m", "projector", "teach", "--pairs", str(tmp_path / "pairs"), "--out",
                            str(tmp_path / "t2"), "--base-url", srv.base_url, "--model", "m", "--candidates", "-1"],
                           capture_output=True, text=True, cwd=repo)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--candidates -1" in r.stderr


def _all_unanswered(tmp_path):
    """A copy of the fixture whose every query names no passage."""
    src = tmp_path / "pairs"
    out = tmp_path / "unanswered"
    out.mkdir()
    passages = P.read_passages(src / P.PASSAGES)
    rows = []
    for s in P.SPLITS:
        rows += [{**r, "query": re.sub(r"\b(" + "|".join(WORDS) + r")\b", "it", r["query"]) + f" {i}", "split": s}
                 for i, r in enumerate(P.load_split(src, s))]
    P.write_passages(passages, out / P.PASSAGES)
    P.write_dataset(rows, out, "qa")
    write_json(out / P.MANIFEST, {"format": P.FORMAT, "format_version": P.FORMAT_VERSION, "task": "qa"})
    return out


def _prompt_copy(tmp_path):
    from importlib import resources

    text = resources.files("projector").joinpath("prompts/relevance.v1.txt").read_text()
    path = tmp_path / "relevance-edited.txt"
    path.write_text(text.replace("You grade search results.", "You grade search results carefully."))
    return path
