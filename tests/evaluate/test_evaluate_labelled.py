"""evaluate --labelled (projector.evaluate.labelled): label-retrieval metrics on labelled items, real embeddings, real artifacts.

The label metric on a hand-computed case; on 36 short texts with two criteria (kind, colour) the cosine row
equals scikit-learn's per-query average precision, a W that maps every item onto its kind's direction scores
mAP 1.0 on kind (not on colour) with a near-zero Brier score, an asymmetric model is scored query side
against document side, and every bad input is one line and exit 2.
"""
import json

import numpy as np
import pytest

import projector
from projector.evaluate import stage as E
from projector.metrics import label_map, label_queries

KINDS = {
    "animal": ["fox", "parrot", "frog", "whale", "snake", "beetle"],
    "vehicle": ["car", "bicycle", "tractor", "bus", "scooter", "van"],
    "food": ["apple", "pepper", "cabbage", "plum", "jelly", "grape"],
}
COLOURS = ["red", "blue"]


def _items():
    """36 test items (3 kinds x 2 colours x 6 things), 4 train items, and 2 test items without a colour."""
    rows = []
    for kind, things in KINDS.items():
        for colour in COLOURS:
            for thing in things:
                rows.append({"id": f"{colour}-{thing}", "text": f"A {colour} {thing}.",
                             "labels": {"kind": kind, "colour": colour}, "split": "test"})
    rows += [{"id": f"t{i}", "text": t, "labels": {"kind": k, "colour": "red"}, "split": "train"}
             for i, (t, k) in enumerate([("A red horse.", "animal"), ("A red truck.", "vehicle"),
                                         ("A red cherry.", "food"), ("A red owl.", "animal")])]
    rows += [{"id": "u1", "text": "A grey donkey.", "labels": {"kind": "animal", "colour": "unknown"}, "split": "test"},
             {"id": "u2", "text": "A silver train.", "labels": {"kind": "vehicle"}, "split": "test"}]
    return rows


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def items(tmp_path):
    return _write(tmp_path / "items.jsonl", _items())


def _export(out, W_q, W_a=None):
    """A real artifact folder (projector.train.export) holding the given maps, for the bundled encoder."""
    import torch

    from projector.embed.encoder import encoder_identity
    from projector.train.export import write_artifact
    from projector.train.projection import Projection
    from projector.train.stage import TrainConfig

    mode = "symmetric" if W_a is None else "asymmetric"
    model = Projection(W_q.shape[1], W_q.shape[0], mode)
    with torch.no_grad():
        model.W_q.copy_(torch.from_numpy(W_q.astype(np.float32)))
        if W_a is not None:
            model.W_a.copy_(torch.from_numpy(W_a.astype(np.float32)))

    class Pairs:
        path, task, manifest, fingerprint = "items", "pairs", {"rewrite": None}, "0" * 16

    summary = {"selected": "given", "warning": None, "validation": {}, "baseline": "cosine", "best_epoch": 0,
               "epochs_run": 0, "train_pairs": 0, "train_seconds": 0.0, "pairs_per_second": None, "device": "cpu",
               "val_ndcg@10_folded": None, "test": None}
    write_artifact(out, model, cfg=TrainConfig(pairs="items", out=str(out), sentence_transformers=False), mode=mode,
                   pairs=Pairs(), summary=summary, encoder_identity=encoder_identity(None))
    return out


def _test_items():
    return [r for r in _items() if r["split"] == "test"]


# ------------------------------------------------------------------------------------------ the metric
SIMS = np.array([[9, .9, .5, .1, .95],
                 [.2, 9, .8, .3, 0],
                 [.7, .1, 9, .6, 0],
                 [0, 0, .4, 9, .5],
                 [0, 0, 0, 0, 9]])
LABELS = ["a", "a", "b", "b", "c"]   # c: one item, under min_class 2


def test_label_queries_by_hand():
    # drop (the protocol): c leaves the pool. Rankings: q0 1,2,3 -> AP 1; q1 2,3,0 -> 1/3; q2 0,3,1 -> 1/2;
    # q3 2,0,1 -> 1 (the diagonal, 9, is never ranked).
    r = label_queries(SIMS, LABELS, min_class=2)
    assert r["ap"] == pytest.approx([1, 1 / 3, 1 / 2, 1])
    assert r["p_at_10"] == pytest.approx([1 / 3] * 4) and r["chance_map"] == pytest.approx(0.5)
    assert list(r["query"]) == [0, 1, 2, 3] and list(r["pool"]) == [0, 1, 2, 3] and r["classes"] == 2
    # distract: c stays in the pool, relevant to nobody. q0 4,1,2,3 -> 1/2; q1 2,3,0,4 -> 1/3; q2 0,3,1,4 -> 1/2;
    # q3 4,2,0,1 -> 1/2.
    r = label_queries(SIMS, LABELS, min_class=2, small_classes="distract")
    assert r["ap"] == pytest.approx([1 / 2, 1 / 3, 1 / 2, 1 / 2]) and r["p_at_10"] == pytest.approx([1 / 4] * 4)
    assert list(r["pool"]) == [0, 1, 2, 3, 4]
    # unknown items take part in nothing: the same numbers as without them
    r = label_queries(SIMS, ["a", "a", "b", "b", "unknown"], min_class=2, ignore="unknown",
                      small_classes="distract")
    assert r["ap"] == pytest.approx([1, 1 / 3, 1 / 2, 1])


def test_label_map_is_the_mean_of_label_queries():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 8))
    y = np.array(["a"] * 25 + ["b"] * 30 + ["c"] * 5, dtype=object)
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    r = label_queries(zn @ zn.T, y)
    m = label_map(z, y)
    assert m["map"] == pytest.approx(r["ap"].mean()) and m["queries"] == 55 and m["classes"] == 2
    assert m["chance_map"] == pytest.approx((25 / 55) ** 2 + (30 / 55) ** 2)


# ------------------------------------------------------------------------------------------ the CLI
def test_cosine_and_baselines_match_an_independent_computation(items, tmp_path):
    from sklearn.metrics import average_precision_score, roc_auc_score

    from projector.embed.embedding import embed

    out = tmp_path / "out"
    assert E.main(["--labelled", str(items), "--label", "kind", "--out", str(out), "--bootstrap", "50"]) == 0
    rep = json.loads((out / "report.json").read_text())
    rows = {r["name"]: r for r in rep["rows"]}
    assert list(rows)[:1] == ["cosine"] and {"mean-centred", "zca-whitening", "all-but-the-top"} <= set(rows)
    d = rep["data"]
    assert (d["split"], d["items"], d["skipped_unknown"], d["queries"], d["classes"]) == ("test", 38, 0, 38, 3)
    # the same numbers from scikit-learn on the raw embeddings (the two unlabelled-colour items have a kind)
    test = _test_items()
    x = embed([r["text"] for r in test], show_progress=False).astype(np.float64)
    y = np.array([r["labels"]["kind"] for r in test])
    s = x @ x.T
    aps, p10 = [], []
    for i in range(len(y)):
        others = np.arange(len(y)) != i
        aps.append(average_precision_score(y[others] == y[i], s[i, others]))
        p10.append((y[others][np.argsort(-s[i, others])[:10]] == y[i]).mean())
    cos = rows["cosine"]["metrics"]
    assert cos["map"] == pytest.approx(np.mean(aps), abs=1e-6) and cos["p@10"] == pytest.approx(np.mean(p10))
    assert cos["chance_map"] == pytest.approx(sum((np.sum(y == k) / len(y)) ** 2 for k in KINDS))
    iu = np.triu_indices(len(y), 1)
    same = (y[:, None] == y[None, :])[iu]
    assert cos["roc_auc"] == pytest.approx(roc_auc_score(same, s[iu]), abs=1e-6)
    assert cos["average_precision"] == pytest.approx(average_precision_score(same, s[iu]), abs=1e-6)
    assert 0.4 < cos["map"] < 0.95             # MiniLM sees the kinds, not perfectly
    lo, hi = rows["cosine"]["ci95"]["map"]
    assert lo <= cos["map"] <= hi and rows["cosine"]["delta_vs_cosine"]["map"]["delta"] == 0
    md = (out / "report.md").read_text()
    for name in rows:
        assert f"| {name} |" in md
    assert "split 'test': 38 items, 0 skipped" in md
    assert "no trained model was evaluated" in (out / "report.html").read_text()


def test_a_map_onto_the_label_directions_scores_one(items, tmp_path, capsys):
    """W (3, d) sends each test item onto its kind's one-hot direction: kind mAP 1, colour far from it."""
    from projector.embed.embedding import embed

    test = [r for r in _test_items() if r["labels"].get("colour") in COLOURS]
    x = embed([r["text"] for r in test], show_progress=False).astype(np.float64)          # (36, d)
    onehot = np.eye(3)[[list(KINDS).index(r["labels"]["kind"]) for r in test]]           # (36, 3)
    W = onehot.T @ np.linalg.solve(x @ x.T, x)                                            # (3, d): W x_i = onehot_i
    model = _export(tmp_path / "kind-map", W)
    out = tmp_path / "out"
    assert E.main(["--labelled", str(items), "--label", "colour", "--model", str(model), "--out", str(out),
                   "--bootstrap", "50"]) == 0
    rep = json.loads((out / "report.json").read_text())
    rows = {r["name"]: r for r in rep["rows"]}
    assert rep["data"]["skipped_unknown"] == 2 and rep["data"]["queries"] == 36
    assert rows["kind-map"]["metrics"]["map"] < rows["cosine"]["metrics"]["map"]   # kind-only: blind to colour
    km = rows["kind-map"]["metrics"]
    assert km["chance_map"] == 0.5 and abs(km["map"] - 0.5) < 0.1 and abs(km["roc_auc"] - 0.5) < 0.1  # chance
    assert "worse than cosine" in capsys.readouterr().out                            # said plainly
    assert E.main(["--labelled", str(items), "--label", "kind", "--model", str(model), "--out", str(out),
                   "--bootstrap", "50", "--small-classes", "distract"]) == 0
    rep = json.loads((out / "report.json").read_text())
    row = {r["name"]: r for r in rep["rows"]}["kind-map"]
    assert row["kind"] == "model" and row["model"]["path"] == str(model)
    # the two colourless items were not in W's fit, so kind mAP over all 38 need not be 1 (the 36 alone: below)
    m = row["metrics"]
    assert m["p@10"] > 0.95 and m["roc_auc"] > 0.97
    assert row["delta_vs_cosine"]["map"]["delta"] > 0
    assert {"logloss", "brier", "ece@15"} <= set(row["calibration"]) and "calibration_note" not in row
    assert sum(row["reliability"]["count"]) == rep["data"]["pairs"] == 38 * 37 // 2
    assert (out / "reliability.png").is_file() and (out / "metrics.png").is_file()
    sub = tmp_path / "sub.jsonl"
    _write(sub, [r for r in _items() if r["id"] not in ("u1", "u2")])
    assert E.main(["--labelled", str(sub), "--label", "kind", "--model", str(model), "--out", str(out),
                   "--bootstrap", "50"]) == 0
    row = {r["name"]: r for r in json.loads((out / "report.json").read_text())["rows"]}["kind-map"]
    assert row["metrics"]["map"] == pytest.approx(1.0) and row["metrics"]["p@10"] == pytest.approx(1.0)
    assert row["metrics"]["roc_auc"] == pytest.approx(1.0) and row["calibration"]["brier"] < 0.01


def test_asymmetric_model_scores_query_side_against_document_side(items, tmp_path):
    from projector.embed.embedding import embed

    rng = np.random.default_rng(1)
    W_q, W_a = rng.normal(size=(16, 384)), rng.normal(size=(16, 384))
    model = _export(tmp_path / "asym", W_q, W_a)
    out = tmp_path / "out"
    assert E.main(["--labelled", str(items), "--label", "kind", "--model", str(model), "--model", str(model),
                   "--out", str(out), "--bootstrap", "50"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in rep["rows"]][-2:] == ["asym", "asym'"]
    got = rep["rows"][-1]["metrics"]["map"]
    x = embed([r["text"] for r in _test_items()], show_progress=False)
    y = [r["labels"]["kind"] for r in _test_items()]
    s = projector.load(model).score(x, x)
    assert got == pytest.approx(label_queries(s, y)["ap"].mean())
    assert got != pytest.approx(label_queries(s.T, y)["ap"].mean())   # the direction matters, and is the right one
    assert any("'asym' is asymmetric" in n for n in rep["notes"])
    assert "query side (W_q)" in (out / "report.md").read_text()


def test_through_the_projector_command(items, tmp_path):
    from projector.__main__ import main

    out = tmp_path / "out"
    assert main(["evaluate", "--labelled", str(items), "--label", "colour", "--min-class", "12", "--out", str(out),
                 "--bootstrap", "20"]) == 0
    d = json.loads((out / "report.json").read_text())["data"]
    assert (d["split"], d["items"], d["skipped_unknown"], d["queries"], d["classes"]) == ("test", 38, 2, 36, 2)
    assert d["class_sizes"] == {"red": 18, "blue": 18} and (out / "report.html").is_file()


def _err(capsys, argv) -> str:
    assert E.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_bad_inputs_are_one_line_and_exit_2(items, tmp_path, capsys):
    base = ["--label", "kind", "--out", str(tmp_path / "out")]
    assert "no such file" in _err(capsys, ["--labelled", str(tmp_path / "nope.jsonl"), *base])
    rows = _items()
    del rows[2]["labels"]
    bad = _write(tmp_path / "bad.jsonl", rows)
    assert f"{bad}:3: missing field 'labels'" in _err(capsys, ["--labelled", str(bad), *base])
    rows = _items()
    rows[5]["id"] = rows[1]["id"]
    _write(bad, rows)
    assert f"{bad}:6: id 'red-parrot' appears twice (first at {bad}:2)" in _err(capsys, ["--labelled", str(bad), *base])
    err = _err(capsys, ["--labelled", str(items), "--label", "size", "--out", str(tmp_path / "o")])
    assert "no row has label 'size'" in err and "labels present: colour, kind" in err
    err = _err(capsys, ["--labelled", str(items), *base, "--split", "validation"])
    assert "no item has split 'validation'" in err and "test (38), train (4)" in err
    err = _err(capsys, ["--labelled", str(items), *base, "--min-class", "14"])
    assert "0 class(es) of >= 14 items" in err and "lower --min-class" in err
    one = _write(tmp_path / "one.jsonl", [{"id": i, "text": f"item {i}", "labels": {"k": "a" if i < 5 else "b"}}
                                          for i in range(8)])
    err = _err(capsys, ["--labelled", str(one), "--label", "k", "--min-class", "4", "--out", str(tmp_path / "o")])
    assert "label 'k' of the items has 1 class(es) of >= 4 items (a: 5, b: 3)" in err
    assert "drop --pairs" in _err(capsys, ["--labelled", str(items), *base, "--pairs", str(tmp_path)])
    assert "--labelled needs --label" in _err(capsys, ["--labelled", str(items), "--out", str(tmp_path / "o")])
    assert "--label applies to --labelled" in _err(capsys, ["--beir", str(tmp_path), "--label", "kind"])
    assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists()   # nothing written on a bad input
