"""generate --judge attribute with option log-probabilities (--label-probabilities) and your labels up front
(--trusted-labels), against a real HTTP server on 127.0.0.1 (tests/openai_server.py, with and without
logprobs); the embedded llama.cpp server at the end (marked llm)."""
import json
import logging
import math

import datasets
import pytest

from openai_server import FakeOpenAI
from projector.errors import DataError, ProjectorError
from projector.formats.pairs import load_items
from projector.generate import labelquality
from projector.generate.judging import PROBE_KEY
from projector.generate.stage import GenerateConfig, generate, main
from projector.llm import options
from projector.llm.records import RecordLog

KINDS = ["alpha", "beta", "gamma", "delta"]  # the fake LLM puts an item in the group named by its first word


def make_items(tmp_path, n=40):
    rows = [{"id": f"item{i}", "text": f"{KINDS[i % 4]} program number {i} does task {i} well."} for i in range(n)]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def config(tmp_path, server, corpus, **kw):
    return GenerateConfig(**{**dict(corpus=str(corpus), id_field="id", out=str(tmp_path / "out"),
                                    base_url=server.base_url, model="fake-model", task="pairs", judge="attribute",
                                    criterion="have the same kind", timeout=2.0, concurrency=3, backoff=0.05), **kw})


def write_labels(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ the distribution


def test_top_logprobs_become_a_distribution_over_the_letters():
    top = {"B": math.log(0.6), " B": math.log(0.1), "A": math.log(0.2), "The": math.log(0.05)}
    probs, mass = options.distribution(top, "ABC")
    floor = 0.05  # C is absent: it gets the lowest probability returned
    assert probs == pytest.approx([0.2 / 0.95, 0.7 / 0.95, floor / 0.95])  # renormalised over A, B, C
    assert mass == pytest.approx(0.9)  # what fell on the letters ("B" and " B" summed, "The" not)
    with pytest.raises(ValueError, match="none of the option letters"):
        options.distribution({"The": -0.1, "b": -1.0}, "AB")
    assert options.options_listing(["x", "y"]) == "A. x\nB. y"


# ------------------------------------------------------------------------------------ --label-probabilities


def test_log_probabilities_label_every_item_with_a_distribution_and_resume(tmp_path):
    corpus = make_items(tmp_path)
    with FakeOpenAI(logprobs=True) as srv:
        m = generate(config(tmp_path, srv, corpus, labels="alpha,beta,gamma"))
        first = srv.requests
        again = generate(config(tmp_path, srv, corpus, labels="alpha,beta,gamma"))
        assert srv.requests == first == 41  # the probe + one per item; the resume asks nothing (and probes not)
        body = srv.bodies[-1]
    assert body["logprobs"] is True and body["top_logprobs"] == options.TOP_LOGPROBS and body["max_tokens"] == 1
    assert "response_format" not in body and "A. alpha\nB. beta\nC. gamma" in body["messages"][0]["content"]
    lp = m["label_probabilities"]
    assert lp["mode"] == "logprobs" and lp["labelled_by"] == "logprobs" and lp["items_judged"]["logprobs"] == 40
    assert again["label_probabilities"]["labelled_by"] == "logprobs" and again["label_counts"] == m["label_counts"]
    assert m["label_counts"]["unknown"] == 0  # no escape: every item gets a distribution
    assert lp["letter_absent"] == {"alpha": 0, "beta": 0, "gamma": 0}  # each letter one token, seen every time
    items = [r for rows in load_items(tmp_path / "out").values() for r in rows]
    for r in items:
        dist = json.loads(r["distribution"])
        assert sum(dist.values()) == pytest.approx(1, abs=1e-4) and r["label"] == max(dist, key=dist.get)
        assert r["confidence"] == pytest.approx(dist[r["label"]])
        kind = r["text"].split()[0]
        if kind != "delta":
            assert r["label"] == kind and r["confidence"] > 0.9
        else:  # no group fits: the probability spreads over all three
            assert r["confidence"] < 0.5
    recs = RecordLog(tmp_path / "out" / "records.jsonl").load()
    assert PROBE_KEY in recs and all("distribution" in recs[f"attr:{r['id']}"]["result"] for r in items)


def test_auto_falls_back_to_json_replies_in_one_line_and_on_refuses(tmp_path, caplog):
    corpus = make_items(tmp_path)
    with FakeOpenAI() as srv, caplog.at_level(logging.INFO, "projector.generate"):  # ignores logprobs
        m = generate(config(tmp_path, srv, corpus, labels="alpha,beta,gamma", max_items=8))
        assert srv.requests == 9
    said = [r.message for r in caplog.records if "label probabilities" in r.message]
    assert len(said) == 1 and "no top_logprobs" in said[0] and "JSON replies" in said[0]
    assert m["label_probabilities"]["mode"] == "json" and m["label_probabilities"]["labelled_by"] == "json"
    assert "confidence" not in datasets.load_from_disk(str(tmp_path / "out" / "dataset"))["train"].column_names
    with FakeOpenAI() as srv:
        with pytest.raises(ProjectorError, match="--label-probabilities on: .* no usable log-probabilities"):
            generate(config(tmp_path, srv, corpus, labels="alpha,beta,gamma", max_items=12,
                            label_probabilities="on"))


def test_a_resume_with_the_other_way_keeps_what_was_labelled_and_says_mixed(tmp_path):
    corpus = make_items(tmp_path)
    with FakeOpenAI(logprobs=True) as srv:
        generate(config(tmp_path, srv, corpus, labels="alpha,beta,gamma", max_items=8, label_probabilities="off"))
        m = generate(config(tmp_path, srv, corpus, labels="alpha,beta,gamma", max_items=16))
        assert srv.requests == 8 + 1 + 8
    assert m["label_probabilities"]["items_judged"] == {"logprobs": 8, "json": 8}
    assert m["label_probabilities"]["labelled_by"] == "mixed"


# ------------------------------------------------------------------------------------ --trusted-labels


def test_your_labels_are_asked_first_and_their_quality_is_kept(tmp_path, caplog):
    corpus = make_items(tmp_path)
    # 16 items with their kinds, delta called "other" (the fake LLM cannot place it: it spreads its probability
    # and the argmax is the first group), given by id, by document id and by text
    mine = ["alpha", "beta", "gamma", "other"]
    rows = [{"id": f"item{i}#0", "label": mine[i % 4]} for i in range(0, 12)]
    rows += [{"id": f"item{i}", "label": mine[i % 4]} for i in range(12, 14)]
    rows += [{"text": f"{KINDS[i % 4]} program number {i} does task {i} well.", "label": mine[i % 4]} for i in (14, 15)]
    rows += [{"text": "alpha thing that the corpus does not hold", "label": "alpha"}]
    labels = write_labels(tmp_path / "mine.jsonl", rows)
    with FakeOpenAI(logprobs=True) as srv, caplog.at_level(logging.INFO, "projector.generate"):
        m = generate(config(tmp_path, srv, corpus, max_items=24, trusted_labels=str(labels)))
        asked = [b["messages"][0]["content"] for b in srv.bodies[1:]]  # after the probe
    assert m["labels"]["names"] == mine and m["labels"]["source"].startswith("your")
    assert m["llm_calls"] == 24  # your 16 corpus items count in --max-items
    mine = {f"item{i}#0" for i in range(16)}
    first_asked = {i for i in mine if any(f"number {i[4:-2]} does" in p for p in asked[:16])}
    assert first_asked == mine
    q = m["label_quality"]
    assert json.loads((tmp_path / "out" / "label_quality.json").read_text()) == q  # written before the long run
    assert q["labelled"] == 17 and q["in_corpus"] == q["answered"] == q["items"] == 16
    assert q["accuracy"] == 0.75 and q["majority_rate"] == 0.25  # the 4 "other" items are missed
    assert q["confusion"]["alpha"] == {"alpha": 4} and q["confusion"]["other"] == {"alpha": 4}
    assert q["confident_half"]["accuracy"] == 1.0 and m["label_probabilities"]["mean_mass"] < 1
    assert set(q["map_vs_cosine"]) >= {"cosine_map", "map_map", "gain", "ci"} and q["verdict"] in (
        "beats cosine", "cannot tell")
    split = {r["id"]: s for s, part in load_items(tmp_path / "out").items() for r in part}
    assert all(split[i] == "train" for i in mine) and set(q["moved_to_train"]) <= mine
    said = "\n".join(r.message for r in caplog.records)
    assert "label quality on 16 of your labels" in said and "yours 'other' -> LLM 'alpha' 4" in said
    assert "are validation items" not in said


def test_labels_of_the_wrong_kind_warn_before_the_long_run(tmp_path, caplog):
    corpus = make_items(tmp_path)
    # your labels are topics the LLM's groups cannot tell apart: it puts everything in the first
    rows = [{"id": f"item{i}#0", "label": "networking" if i % 3 else "file systems"} for i in range(12)]
    rows.sort(key=lambda r: r["label"])  # "file systems" (4 items) first: the LLM's every answer
    labels = write_labels(tmp_path / "mine.jsonl", rows)
    with FakeOpenAI(logprobs=True) as srv, caplog.at_level(logging.INFO, "projector.generate"):
        with pytest.raises(DataError, match="same label 'file systems'"):  # and in the end, one class: exit 2
            generate(config(tmp_path, srv, corpus, max_items=12, trusted_labels=str(labels)))
    q = json.loads((tmp_path / "out" / "manifest.json").read_text())["label_quality"]
    assert q["accuracy"] == pytest.approx(4 / 12, abs=1e-3) and q["majority_rate"] == pytest.approx(8 / 12, abs=1e-3)
    assert q["verdict"] == "loses to cosine"
    warning = [r.message for r in caplog.records if r.message.startswith("WARNING: the LLM's labels")]
    assert len(warning) == 1 and f"--train-labels {labels}" in warning[0]


def label_file_cases(tmp_path):
    return {
        "empty": ([], "no labelled items"),
        "no label": ([{"id": "item0#0"}], ":1: no field 'label'"),
        "unknown id": ([{"id": "item0#0", "label": "alpha"}, {"id": "nosuch", "label": "beta"}], ":2: field 'id'"),
        "outside the set": ([{"id": "item0#0", "label": "alpha"}, {"id": "item1#0", "label": "omega"}],
                            ":2: field 'label' 'omega' is not in the --labels set"),
        "one class": ([{"id": "item0#0", "label": "alpha"}, {"id": "item4#0", "label": "alpha"}],
                      "every item has the label 'alpha'"),
        "not json": (["{not json"], ":1:"),
    }


@pytest.mark.parametrize("case", list(label_file_cases(None)))
def test_bad_label_files_are_one_line_exit_2_and_lose_nothing(tmp_path, capsys, case):
    corpus = make_items(tmp_path)
    rows, message = label_file_cases(tmp_path)[case]
    bad = write_labels(tmp_path / "bad.jsonl", rows)
    with FakeOpenAI(logprobs=True) as srv:
        argv = ["--corpus", str(corpus), "--id-field", "id", "--out", str(tmp_path / "out"), "--base-url",
                srv.base_url, "--model", "fake-model", "--task", "pairs", "--judge", "attribute", "--criterion",
                "have the same kind", "--labels", "alpha,beta,gamma", "--max-items", "6"]
        assert main(argv) == 0
        before = (tmp_path / "out" / "records.jsonl").read_bytes()
        requests = srv.requests
        capsys.readouterr()
        assert main(argv + ["--max-items", "12", "--trusted-labels", str(bad)]) == 2
        assert srv.requests == requests  # refused before any call
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and message in err[0], err
    assert (tmp_path / "out" / "records.jsonl").read_bytes() == before


def test_label_quality_figures_without_a_server():
    yours = ["a"] * 6 + ["b"] * 4
    llm = [{"label": "a", "distribution": {"a": 0.9, "b": 0.1}}] * 6 + [
        {"label": "a", "distribution": {"a": 0.55, "b": 0.45}}] * 2 + [
        {"label": "b", "distribution": {"a": 0.2, "b": 0.8}}] * 2
    q = labelquality.measure(yours, llm)
    assert q["accuracy"] == 0.8 and q["majority_rate"] == 0.6 and q["majority_label"] == "a"
    assert q["confusion"] == {"a": {"a": 6}, "b": {"a": 2, "b": 2}}
    assert q["confident_half"] == {"items": 5, "accuracy": 1.0, "min_confidence": 0.9}
    assert q["verdict"] == "cannot tell" and "map_vs_cosine" not in q


# ------------------------------------------------------------------------------------ the embedded LLM


@pytest.mark.llm
def test_the_embedded_server_returns_option_log_probabilities(tmp_path):
    pytest.importorskip("llama_cpp", reason='needs pip install "llama-cpp-python[server]" (scripts/setup.sh does)')
    texts = ["vim: Vi IMproved, a text editor for the terminal", "gimp: the GNU image manipulation program, "
             "a GTK graphical application", "grep: print lines that match patterns, a command-line tool",
             "inkscape: vector graphics editor with a graphical user interface"]
    corpus = tmp_path / "items.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    labels = write_labels(tmp_path / "mine.jsonl", [{"id": "p2", "label": "command-line tool"},
                                                    {"id": "p3", "label": "graphical application"}])
    m = generate(GenerateConfig(corpus=str(corpus), id_field="id", out=str(tmp_path / "out"), task="pairs",
                                judge="attribute", criterion="have the same kind of user interface",
                                labels="command-line tool,graphical application", label_probabilities="on",
                                trusted_labels=str(labels), concurrency=1, validation_fraction=0.0,
                                test_fraction=0.0))
    assert m["label_probabilities"]["mode"] == "logprobs" and m["label_probabilities"]["mean_mass"] > 0.5
    items = load_items(tmp_path / "out")["train"]
    assert len(items) == 4 and all(abs(sum(json.loads(r["distribution"]).values()) - 1) < 1e-3 for r in items)
    assert m["label_quality"]["answered"] == 2
    print({r["id"]: (r["label"], round(r["confidence"], 3)) for r in items})


def test_your_items_added_later_keep_what_an_earlier_run_labelled(tmp_path):
    corpus = make_items(tmp_path)
    with FakeOpenAI(logprobs=True) as srv:
        m = generate(config(tmp_path, srv, corpus, labels="alpha,beta,gamma", max_items=8))
        before = {r["id"] for rows in load_items(tmp_path / "out").values() for r in rows}
        others = [f"item{i}#0" for i in range(40) if f"item{i}#0" not in before][:4]
        labels = write_labels(tmp_path / "mine.jsonl", [{"id": i, "label": ["alpha", "beta"][k % 2]}
                                                        for k, i in enumerate(others)])
        m = generate(config(tmp_path, srv, corpus, labels="alpha,beta,gamma", max_items=8, trusted_labels=str(labels)))
    after = {r["id"] for rows in load_items(tmp_path / "out").values() for r in rows}
    assert after == before | set(others) and m["label_quality"]["answered"] == 4


def test_a_document_of_one_passage_may_be_named_by_its_document_id(tmp_path):
    from projector.errors import DataError as Bad
    from projector.formats.labels import read_trusted_labels

    items = {"a#0": {"text": "alpha"}, "b#0": {"text": "beta one"}, "b#1": {"text": "beta two"}}
    ok = write_labels(tmp_path / "ok.jsonl", [{"id": "a", "label": "x"}, {"id": "b#1", "label": "y"}])
    assert read_trusted_labels(ok, items).ids == ["a#0", "b#1"]  # the same file train --train-labels reads
    two = write_labels(tmp_path / "two.jsonl", [{"id": "a", "label": "x"}, {"id": "b", "label": "y"}])
    with pytest.raises(Bad, match=r"two.jsonl:2: field 'id' 'b' is no item"):  # two passages: which one?
        read_trusted_labels(two, items)
