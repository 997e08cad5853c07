"""Your users' real queries (projector.formats.realqueries) as the judge: train --validation-queries decides on them,
evaluate --queries scores on them; bad files stop with one line naming the file, line and field."""
import json

import pytest

from projector.evaluate import stage as E
from projector.train import data as train_data
from projector.train import stage as T
from projector.formats.corpus import Passage
from projector.errors import DataError
from projector.formats.realqueries import read_real_queries
from test_train import FAST, ITEMS, make_qa_pairs

PASSAGES = [Passage("a#0", "a", "first part of a"), Passage("a#1", "a", "second part of a"),
            Passage("b#0", "b", "all of b")]


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def qa_pairs(tmp_path_factory):
    return make_qa_pairs(tmp_path_factory.mktemp("pairs") / "qa")


def test_ids_documents_lists_and_repeated_queries(tmp_path):
    real = read_real_queries(write(tmp_path / "q.jsonl", [
        {"query": "  where is   b ", "passage_id": "b#0"},
        {"text": "all of a", "doc_id": "a"},                     # every passage of the document
        {"query": "either", "passage_ids": ["a#1", "b#0"]},
        {"query": "where is b", "passage_id": "a#0"},            # the same query again: one query, both passages
    ]), PASSAGES)
    assert real.queries == ["where is b", "all of a", "either"]
    assert real.relevant == [{2, 0}, {0, 1}, {1, 2}] and real.positives == [2, 0, 1] and len(real) == 3


@pytest.mark.parametrize("rows, message", [
    ([{"query": "q", "passage_id": "c#0"}], "q.jsonl:1: passage_id 'c#0' is no passage_id of passages.jsonl"),
    ([{"query": "q", "doc_id": "c"}], "q.jsonl:1: doc_id 'c' is no doc_id of passages.jsonl"),
    ([{"query": "q", "passage_id": "a#0"}, {"query": "q2"}], "q.jsonl:2: give exactly one of passage_id"),
    ([{"query": "q", "passage_id": "a#0", "doc_id": "a"}], "q.jsonl:1: give exactly one of"),
    ([{"question": "q", "passage_id": "a#0"}], "q.jsonl:1: no query text in field query or text"),
    ([{"query": "q", "passage_ids": []}], "q.jsonl:1: 'passage_ids' must be a non-empty list"),
    (["{not json"], "q.jsonl:1: invalid JSON"),
    ([], "no queries"),
])
def test_bad_files_name_the_line_and_field(tmp_path, rows, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        read_real_queries(write(tmp_path / "q.jsonl", rows), PASSAGES)


def song_queries(path):
    """Users who want the *song* of an item (what cosine already ranks first), asked about the validation items:
    the opposite of what the folder's LLM-made pairs teach (song-like queries -> the item's recipe)."""
    return write(path, [{"query": f"a catchy tune with guitar celebrating the {it}", "passage_id": f"s{ITEMS.index(it)}"}
                        for it in ITEMS[20:25]] +
                 [{"query": f"a cheerful melody about the {it}", "passage_id": f"s{ITEMS.index(it)}"}
                  for it in ITEMS[20:25]])


def test_real_validation_queries_decide_what_is_exported(qa_pairs, tmp_path):
    own = T.train(pairs=str(qa_pairs), out=str(tmp_path / "own"), **FAST)
    assert own["selected"] == "trained"          # on the folder's own validation split the map wins
    assert own["validated_on"] == {"queries": 5, "source": "the pairs folder's validation split"}
    real = song_queries(tmp_path / "users.jsonl")
    told = T.train(pairs=str(qa_pairs), out=str(tmp_path / "real"), validation_queries=str(real), **FAST)
    # The users' queries want what cosine gives them: the map that moves queries onto recipes loses on them.
    assert told["selected"] == "cosine" and told["warning"]
    assert "train on those (--train-queries FILE" in told["warning"]  # the remedy, where the user has real queries
    assert "--train-queries" not in (own["warning"] or "")
    assert told["validated_on"] == {"queries": 10, "source": f"real queries ({real})"}
    assert told["validation"]["trained"]["val_ndcg@10"] <= told["validation"]["cosine"]["val_ndcg@10"]
    # What the folder's own validation would have shipped: worse than cosine on those users' queries.
    rep = E.run(E.EvalConfig(models=[str(tmp_path / "own")], pairs=str(qa_pairs), queries=str(real),
                             out=str(tmp_path / "eval"), bootstrap=50))
    ndcg = {r["name"]: r["metrics"]["ndcg@10"] for r in rep["rows"]}
    assert ndcg["own"] < ndcg["cosine"] - 0.1, ndcg
    meta = json.loads((tmp_path / "real" / "projector.json").read_text())
    assert meta["metrics"]["validated_on"]["queries"] == 10 and meta["selected"] == "cosine"


def test_train_queries_replace_the_llm_train_split(qa_pairs, tmp_path):
    """--train-queries: the map learns what the users' queries want (cooking questions that mean the item's song,
    where cosine picks the recipe), not what the folder's LLM-made train split teaches (song-like queries -> the
    recipe); a doc_id row trains on every passage of the document."""
    ask = lambda items: [{"query": f"how do I cook the {it} slowly with salt", "passage_id": f"s{ITEMS.index(it)}"}
                         for it in items]
    users = write(tmp_path / "users-train.jsonl", ask(ITEMS[:20]) + [{"query": "anything about the mango", "doc_id": "d0"}])
    val = write(tmp_path / "users-val.jsonl", ask(ITEMS[20:25]))
    got = T.train(pairs=str(qa_pairs), out=str(tmp_path / "real"), train_queries=str(users),
                  validation_queries=str(val), select_confidence=0, **FAST)
    assert got["trained_on"] == {"pairs": 22, "source": f"real queries ({users})"} and got["train_pairs"] == 22
    folder = T.train(pairs=str(qa_pairs), out=str(tmp_path / "llm"), validation_queries=str(val),
                     select_confidence=0, **FAST)
    assert folder["trained_on"] == {"pairs": 20, "source": "the pairs folder's train split"}
    ndcg = lambda s, name: s["validation"][name]["val_ndcg@10"]
    assert ndcg(got, "trained") > ndcg(got, "cosine") + 0.1 and got["selected"] != "cosine"  # learned the users' want
    assert ndcg(got, "trained") > ndcg(folder, "trained") + 0.1, (ndcg(got, "trained"), ndcg(folder, "trained"))
    assert json.loads((tmp_path / "real" / "config.json").read_text())["train_queries"] == str(users)
    meta = json.loads((tmp_path / "real" / "projector.json").read_text())
    assert meta["training"]["trained_on"] == got["trained_on"]
    both = T.train(pairs=str(qa_pairs), out=str(tmp_path / "both"), train_queries=str(users), keep_llm_train=True,
                   validation_queries=str(val), select_confidence=0, **{**FAST, "epochs": 1})
    assert both["trained_on"] == {"pairs": 42, "source": f"real queries ({users}) and the pairs folder's train split"}
    from projector.errors import ProjectorError
    with pytest.raises(ProjectorError, match="--keep-llm-train keeps the folder's train split beside --train-queries"):
        T.train(pairs=str(qa_pairs), out=str(tmp_path / "x"), keep_llm_train=True, **FAST)


def test_train_queries_that_are_also_validation_queries_are_warned_about(qa_pairs, tmp_path, caplog):
    val = song_queries(tmp_path / "users.jsonl")
    T.train(pairs=str(qa_pairs), out=str(tmp_path / "m"), train_queries=str(val), validation_queries=str(val),
            **{**FAST, "epochs": 1})
    assert "10 of the 10 --validation-queries are also train queries" in caplog.text
    # with --keep-llm-train the folder's train queries are trained on too, and are checked too
    caplog.clear()
    llm_val = write(tmp_path / "llm-val.jsonl", [{"query": f"a catchy tune with guitar celebrating the {it}",
                                                  "passage_id": f"r{ITEMS.index(it)}"} for it in ITEMS[:3]])
    users = write(tmp_path / "users-train.jsonl", [{"query": "slow cooked mango", "passage_id": "r0"}])
    T.train(pairs=str(qa_pairs), out=str(tmp_path / "k"), train_queries=str(users), keep_llm_train=True,
            validation_queries=str(llm_val), **{**FAST, "epochs": 1})
    assert f"3 of the 3 --validation-queries are also train queries of {qa_pairs}" in caplog.text
    caplog.clear()
    T.train(pairs=str(qa_pairs), out=str(tmp_path / "n"), train_queries=str(users),
            validation_queries=str(llm_val), **{**FAST, "epochs": 1})
    assert "are also train queries" not in caplog.text  # not kept: not trained on, no overlap


@pytest.mark.parametrize("flag, bad_row, message", [
    ("--validation-queries", {"query": "no such", "passage_id": "x9"}, "users.jsonl:2: passage_id 'x9'"),
    ("--train-queries", {"query": "", "passage_id": "r1"}, "users.jsonl:2: field 'query' is empty"),
])
def test_a_bad_queries_file_exits_2_before_any_embedding(qa_pairs, tmp_path, capsys, monkeypatch, flag, bad_row,
                                                         message):
    bad = write(tmp_path / "users.jsonl", [{"query": "ok", "passage_id": "r0"}, bad_row])
    monkeypatch.setattr(train_data, "embed", lambda *a, **k: pytest.fail("embedded before reading the queries"))
    code = T.main(["--pairs", str(qa_pairs), "--out", str(tmp_path / "m"), flag, str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_train_refuses_validation_queries_for_labelled_pairs(tmp_path):
    from projector.errors import ProjectorError
    from test_train import make_labelled_pairs

    folder = make_labelled_pairs(tmp_path / "lab")
    with pytest.raises(ProjectorError, match="--validation-queries .* validate task qa"):
        T.train(pairs=str(folder), out=str(tmp_path / "m"), validation_queries=str(tmp_path / "q.jsonl"), **FAST)
    with pytest.raises(ProjectorError, match="--train-queries .* train task qa"):
        T.train(pairs=str(folder), out=str(tmp_path / "m"), train_queries=str(tmp_path / "q.jsonl"), **FAST)


def test_evaluate_scores_the_users_queries_against_the_pairs_corpus(qa_pairs, tmp_path):
    out = tmp_path / "eval"
    real = song_queries(tmp_path / "users.jsonl")
    assert E.main(["--pairs", str(qa_pairs), "--queries", str(real), "--out", str(out), "--bootstrap", "50"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["data"]["name"] == "users" and rep["data"]["queries"] == 10 and rep["data"]["corpus"] == 2 * len(ITEMS)
    assert rep["rows"][0]["name"] == "cosine" and rep["rows"][0]["metrics"]["ndcg@10"] > 0.8  # songs: cosine's pick
    assert E.main(["--queries", str(real), "--beir", str(tmp_path), "--pairs", str(qa_pairs)]) == 2
