"""--judge attribute against a real HTTP server on 127.0.0.1 (tests/openai_server.py): one call per item,
labels normalised onto one set, unknown kept, resumable; and the label-fitted maps of projector.train.labelfit
(LDA; the item-pair loss through projector.train.fit; train on items folders: tests/train/test_train_items.py)."""
import json
import subprocess
import sys

import datasets
import numpy as np
import pytest

from openai_server import FakeOpenAI
from projector.generate.attribute import Labels
from projector.errors import DataError, ProjectorError
from projector.generate.stage import GenerateConfig, generate
from projector.train.labelfit import lda
from projector.metrics import label_map
from projector.formats.pairs import UNKNOWN, load_items, load_pairs
from projector.llm.records import RecordLog

KINDS = ["alpha", "beta", "gamma", "delta"]  # delta is in no label set below: the fake LLM answers unknown


def make_items(tmp_path, n=40, kinds=KINDS):
    rows = [{"id": f"item{i}", "text": f"{kinds[i % len(kinds)]} program number {i} does task {i} well."}
            for i in range(n)]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path, {r["id"] + "#0": r["text"].split()[0] for r in rows}


def config(tmp_path, server, corpus, **kw):
    base = dict(corpus=str(corpus), id_field="id", out=str(tmp_path / "out"), base_url=server.base_url,
                model="fake-model", task="pairs", judge="attribute", criterion="have the same kind",
                timeout=2.0, concurrency=3, backoff=0.05, label_probabilities="off")  # JSON replies (see
    base.update(kw)                                                        # tests/generate/test_label_probabilities.py)
    return GenerateConfig(**base)


def test_labels_merge_spelling_and_synonyms_and_keep_unknown():
    labels = Labels.parse("command-line tool=cli|console program,graphical application=gui,daemon")
    assert labels.normalise("Command line tools") == "command-line tool"
    assert labels.normalise("commandline tool") == "command-line tool"
    assert labels.normalise("CLI") == "command-line tool"
    assert labels.normalise("a GUI") == "graphical application"
    assert labels.normalise("graphical aplication") == "graphical application"
    assert labels.normalise("daemons") == "daemon"
    assert labels.normalise("Not sure") == UNKNOWN
    assert labels.normalise("web application") is None  # outside the set: re-asked, never guessed


@pytest.mark.parametrize("text, why", [("", "empty"), (" , ,", "empty"), ("only", "one label"),
                                       ("a,A", "same label"), ("a,b=unknown", "reserved")])
def test_bad_label_sets_are_refused(text, why):
    with pytest.raises(ProjectorError, match=why):
        Labels.parse(text)


def test_one_call_per_item_labels_normalised_unknown_kept_and_resumed(tmp_path):
    corpus, truth = make_items(tmp_path)
    with FakeOpenAI(faults=["outside", "spelling", "spelling"]) as srv:
        m = generate(config(tmp_path, srv, corpus, labels="alpha,beta,gamma"))
        first_requests = srv.requests
        again = generate(config(tmp_path, srv, corpus, labels="alpha,beta,gamma"))
        assert srv.requests == first_requests  # resumed from records.jsonl: nothing asked twice
    out = tmp_path / "out"
    dd = datasets.load_from_disk(str(out / "dataset"))
    rows = [r for split in dd.values() for r in split]
    assert sorted(dd["train"].column_names) == ["id", "label", "split", "text"]
    assert len(rows) == 40 and first_requests == 41  # 40 items + the one re-asked "outside" reply
    for r in rows:
        assert r["label"] == (truth[r["id"]] if truth[r["id"]] != "delta" else UNKNOWN), r
    assert m["layout"] == "items" and m["llm_calls"] == 40 and again["label_counts"] == m["label_counts"]
    assert m["label_counts"] == {"alpha": 10, "beta": 10, "gamma": 10, UNKNOWN: 10}
    assert m["counts"]["invalid_replies"] == 1
    assert m["labels"]["source"] == "given"
    train = [r["label"] for r in dd["train"] if r["label"] != UNKNOWN]
    assert m["implied_pairs"]["train"]["pairs"] == len(train) * (len(train) - 1) // 2
    assert len(RecordLog(out / "records.jsonl").load()) == 40
    loaded = load_items(out)
    assert sorted(r["id"] for split in loaded.values() for r in split) == sorted(r["id"] for r in rows)
    assert {r["id"]: r["label"] for split in loaded.values() for r in split} == {r["id"]: r["label"] for r in rows}
    with pytest.raises(DataError, match="load_items"):
        load_pairs(out)  # items are not pairs: the pair loader says which reader to use


def test_settings_name_judge_and_labels_only_for_attribute(tmp_path):
    """Runs made before --judge (pairwise) keep their resume identity; attribute runs add judge and labels."""
    pairwise = GenerateConfig(corpus="c", out="o", task="pairs", criterion="same kind")
    assert "judge" not in pairwise.settings() and "labels" not in pairwise.settings()
    attr = GenerateConfig(corpus="c", out="o", task="pairs", criterion="same kind", judge="attribute", labels="a,b")
    assert attr.settings()["judge"] == "attribute" and attr.settings()["labels"] == "a,b"


def test_the_llm_proposes_the_label_set_once_and_a_resume_keeps_it(tmp_path):
    corpus, truth = make_items(tmp_path, kinds=["alpha", "beta", "gamma"])
    with FakeOpenAI() as srv:
        m = generate(config(tmp_path, srv, corpus))
        n = srv.requests
        generate(config(tmp_path, srv, corpus))
        assert srv.requests == n
    assert m["labels"]["names"] == ["alpha", "beta", "gamma"] and m["labels"]["source"].startswith("proposed by")
    assert m["llm_calls"] == 41 and n == 41  # the proposal + one per item
    assert "labelset" in RecordLog(tmp_path / "out" / "records.jsonl").load()
    with FakeOpenAI() as srv, pytest.raises(ProjectorError, match="other settings"):
        generate(config(tmp_path, srv, corpus, labels="alpha,beta"))  # another set: refused, records kept


@pytest.mark.parametrize("labels, message", [("zeta,eta", "answered 'unknown' for all 40"),
                                             ("alpha,zeta", "same label 'alpha'")])
def test_a_criterion_the_llm_cannot_apply_exits_2_and_keeps_the_records(tmp_path, repo, labels, message):
    corpus, _ = make_items(tmp_path, kinds=["alpha", "delta"])
    with FakeOpenAI() as srv:
        cmd = [sys.executable, "-m", "projector.generate", "--corpus", str(corpus), "--id-field", "id",
               "--out", str(tmp_path / "out"), "--base-url", srv.base_url, "--model", "fake-model",
               "--task", "pairs", "--judge", "attribute", "--criterion", "have the same kind", "--labels", labels,
               "--label-probabilities", "off"]
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=repo, timeout=120)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr.strip().splitlines()[-1]
    assert len(RecordLog(tmp_path / "out" / "records.jsonl").load()) == 40  # nothing labelled is lost


def test_attribute_needs_the_pairs_task_and_a_known_judge(tmp_path):
    corpus, _ = make_items(tmp_path)
    with FakeOpenAI() as srv:
        with pytest.raises(ProjectorError, match="--task pairs"):
            generate(config(tmp_path, srv, corpus, task="qa"))
        with pytest.raises(ProjectorError, match="--judge"):
            generate(config(tmp_path, srv, corpus, judge="vote"))
        with pytest.raises(ProjectorError, match="empty"):
            generate(config(tmp_path, srv, corpus, labels=","))
        assert srv.requests == 0


# --------------------------------------------------------------------------------------------- labelfit


def clusters(n, d=32, classes=4, noise=2.0, seed=0):
    """Class signal in 3 dims, a large shared nuisance in the others: cosine is poor, a linear map fixes it."""
    centres = np.random.default_rng(99).normal(size=(classes, 3))  # the same classes in every sample
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, d)) * noise
    x[:, :3] = centres[y] + rng.normal(size=(n, 3)) * 0.3
    return x, np.array([f"c{v}" for v in y], dtype=object)


def test_label_map_is_chance_for_random_vectors_and_one_for_perfect_ones():
    rng = np.random.default_rng(0)
    y = np.array(["a"] * 50 + ["b"] * 150 + ["c"] * 5, dtype=object)  # c: under min_class, left out
    r = label_map(rng.normal(size=(205, 16)), y)
    assert r["queries"] == 200 and r["classes"] == 2
    assert abs(r["chance_map"] - (0.25 ** 2 + 0.75 ** 2)) < 1e-9
    assert abs(r["map"] - r["chance_map"]) < 0.06
    perfect = np.eye(16)[[0] * 50 + [1] * 150 + [2] * 5]
    assert label_map(perfect, y)["map"] == pytest.approx(1.0)
    with_unknown = np.concatenate([y, [UNKNOWN] * 30])  # unsure items: left out, not a class of their own
    z = np.concatenate([perfect, np.tile(np.eye(16)[0], (30, 1))])
    assert label_map(z, with_unknown, ignore=UNKNOWN)["map"] == pytest.approx(1.0)
    assert label_map(z, with_unknown)["classes"] == 3 and label_map(z, with_unknown)["map"] < 1.0


def test_lda_and_the_trained_pair_loss_beat_cosine_on_held_out_items():
    """LDA (closed form) and the item-pair loss run by the one training loop (projector.train.fit on
    labelfit.item_data), both from labels with unknown items among them."""
    import torch

    from projector.train.fit import fit
    from projector.train.labelfit import item_data, item_split, label_ids
    from projector.train.projection import Projection
    from projector.train.stage import TrainConfig

    x, y = clusters(600)
    xv, yv = clusters(200, seed=1)
    xt, yt = clusters(400, seed=2)
    y_noisy = y.copy()
    y_noisy[::7] = UNKNOWN  # unknown items take part in no pair
    cos = label_map(xt, yt)["map"]
    m = lda(x, y_noisy)
    assert m.W.shape == (3, 32) and 0 <= m.shrinkage <= 1
    assert label_map(m.transform(xt), yt)["map"] > cos + 0.2
    assert label_map(lda(x, y_noisy, centre=False).transform(xt), yt)["map"] > cos + 0.2  # what train exports

    unit = lambda a: torch.as_tensor(a / np.linalg.norm(a, axis=1, keepdims=True), dtype=torch.float32)
    known = y_noisy != UNKNOWN
    ids = label_ids(y_noisy)
    data = item_data(unit(x[known]), list(y_noisy[known]), ids)
    data.val = item_split(unit(xv), list(yv), ids)
    assert data.kind == "items" and data.y.tolist() == [ids[v] for v in y_noisy[known]]
    model = Projection(32, mode="symmetric")
    state = fit(model, data, TrainConfig(pairs="-", out="-", epochs=60, patience=10, lr=1e-2, batch_size=256))
    with torch.no_grad():
        z = model.project_queries(unit(xt)).numpy()
    history = state["history"]
    assert state["best_epoch"] > 0 and max(r["val_map"] for r in history) > label_map(xv, yv, min_class=2)["map"]
    assert label_map(z, yt)["map"] > cos + 0.1


def test_item_split_pairs_are_the_implied_pairs():
    """Validation items imply every pair i < j (same label = 1); past max_pairs a seeded sample, never i == j."""
    import torch

    from projector.train.labelfit import item_split

    x = torch.eye(6)
    s = item_split(x, ["a", "a", "b", "b", "b", "new"], {"a": 0, "b": 1})
    assert s.labels.tolist() == [0, 0, 1, 1, 1, 2]  # a label no train item has: a class of its own
    a, b, same = s.pairs
    assert len(same) == 15 and int(same.sum()) == 1 + 3
    big = item_split(x, list("aabbbc"), {"a": 0, "b": 1}, max_pairs=7, seed=3)
    assert len(big.pairs[2]) == 7 and not (big.pairs[0] == big.pairs[1]).all(dim=1).any()
