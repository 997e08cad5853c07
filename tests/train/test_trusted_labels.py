"""Items you labelled yourself (projector.formats.labels) trained and validated on by projector.train: a map
from a few trusted labels where the LLM's labels are biased, the provenance in projector.json, the selection
on trusted validation labels, and every bad trusted-label file refused with one line naming file, line, field."""
import json

import pytest

from projector.errors import DataError
from projector.formats import pairs as P
from projector.formats.labels import read_trusted_labels, text_id
from test_train_items import KINDS, TOPICS, held_out, item_text, write_items

QUICK = dict(threads=1, sentence_transformers=False)


def biased(i, kind, split):
    """The LLM's labels: every daemon called a command-line tool, a third of the graphical ones too (biased
    errors, like the 1.5B model calling command-line tools graphical), validation included."""
    if kind == "daemon" or (kind == "gui" and i % 3 == 0):
        return "cli"
    return kind


def write_labels(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = write_items(tmp_path_factory.mktemp("items") / "attr", label=biased)
    manifest = json.loads((root / P.MANIFEST).read_text())
    manifest["labels"] = {"names": list(KINDS)}
    (root / P.MANIFEST).write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def trusted_files(folder, tmp_path_factory):
    """Train labels: 18 train items (topics 0-5); validation labels: the 9 items of topics 10-12 (the folder's
    validation split), both correct."""
    d = tmp_path_factory.mktemp("labels")
    train = [{"id": f"p{3 * t + k}#0", "label": kind} for t in range(6) for k, kind in enumerate(KINDS)]
    val = [{"id": f"p{3 * t + k}#0", "label": kind} for t in range(10, 13) for k, kind in enumerate(KINDS)]
    return write_labels(d / "train.jsonl", train), write_labels(d / "val.jsonl", val)


def _test_map(out):
    import projector
    from projector.embed import embed
    from projector.metrics import label_map

    texts, kinds = held_out()
    x = embed(list(texts), show_progress=False)
    return label_map(projector.load(out).project_queries(x), kinds, min_class=2)["map"], \
        label_map(x, kinds, min_class=2)["map"]


def test_a_few_trusted_labels_beat_cosine_where_the_llm_labels_are_biased(folder, trusted_files, tmp_path):
    from projector.train import train

    train_labels, val_labels = trusted_files
    out = tmp_path / "m"
    s = train(pairs=str(folder), out=str(out), train_labels=str(train_labels), validation_labels=str(val_labels),
              **QUICK)
    projected, cosine = _test_map(out)
    assert s["selected"] != "cosine" and projected > cosine + 0.2, (s["selected"], projected, cosine)
    assert s["trained_on"]["source"] == f"your labels ({train_labels})" and s["trained_on"]["pairs"] == 18
    assert s["validated_on"] == {"queries": 9, "source": f"your labels ({val_labels})"}
    meta = json.loads((out / "projector.json").read_text())
    assert f"your labels ({val_labels})" in json.dumps(meta)


def test_trusted_validation_labels_see_what_the_llm_validation_split_cannot(folder, trusted_files, tmp_path):
    """The LLM's labels, validated on the LLM's own (biased) validation split, against the same labels validated
    on trusted ones: every candidate is then scored on the trusted labels (cosine included)."""
    from projector.train import train

    _, val_labels = trusted_files
    own = train(pairs=str(folder), out=str(tmp_path / "own"), epochs=20, **QUICK)
    judged = train(pairs=str(folder), out=str(tmp_path / "judged"), validation_labels=str(val_labels), epochs=20,
                   **QUICK)
    assert own["validated_on"]["source"].endswith("(labelled by the LLM)")
    assert judged["validated_on"]["source"] == f"your labels ({val_labels})"
    key = judged["metric"]
    assert judged["validated_on"]["queries"] == 9
    assert judged["validation"]["cosine"][key] != pytest.approx(own["validation"]["cosine"][key])


def test_items_you_validate_on_never_train_under_the_llms_label(folder, trusted_files, tmp_path):
    """--validation-labels naming items of the folder's train split: they leave the LLM's training set (trained
    on under the LLM's label, they would flatter the validation that judges the map)."""
    from projector.train import train

    yours, _ = trusted_files                                              # 18 of the folder's train items
    s = train(pairs=str(folder), out=str(tmp_path / "m"), validation_labels=str(yours), epochs=2, **QUICK)
    mine = {json.loads(x)["id"] for x in yours.read_text().splitlines()}
    known = [r for r in P.load_items(folder)["train"] if r["label"] != P.UNKNOWN]
    assert s["trained_on"]["pairs"] == len([r for r in known if r["id"] not in mine]) < len(known)


def test_keep_llm_train_adds_the_llm_labels_of_other_items(folder, trusted_files, tmp_path):
    from projector.train import train

    train_labels, val_labels = trusted_files
    trusted_ids = {json.loads(line)["id"] for line in train_labels.read_text().splitlines()}
    others = [r for r in P.load_items(folder)["train"] if r["id"] not in trusted_ids]
    raw = train(pairs=str(folder), out=str(tmp_path / "raw"), train_labels=str(train_labels),
                validation_labels=str(val_labels), keep_llm_train=True, relabel_llm=False, epochs=5, **QUICK)
    known = [r for r in others if r["label"] != P.UNKNOWN]
    assert raw["trained_on"]["pairs"] == 18 + len(known) and 0 < len(known) < len(others)
    assert raw["trained_on"]["source"].endswith("and the pairs folder's train split")
    # by default a label model fitted on your labels relabels all of them (unknown ones too), half are kept
    s = train(pairs=str(folder), out=str(tmp_path / "relabelled"), train_labels=str(train_labels),
              validation_labels=str(val_labels), keep_llm_train=True, epochs=5, **QUICK)
    assert s["trained_on"]["relabelled_llm_items"]["items"] == len(others)
    assert s["trained_on"]["relabelled_llm_items"]["kept"] == round(len(others) / 2)
    assert s["trained_on"]["pairs"] == 18 + round(len(others) / 2)


def test_the_label_model_corrects_biased_llm_labels_from_a_few_of_yours():
    """The LLM calls every daemon a command-line tool; 6 labelled items of each kind are enough for the label
    model (the LLM's distribution + the embedding) to give the daemons back their label."""
    import numpy as np

    from projector.embed import embed
    from projector.train.labelmodel import distributions, relabel

    kinds = list(KINDS)
    texts = [item_text(t, k) for t in TOPICS for k in kinds]
    truth = [k for t in TOPICS for k in kinds]
    llm = [biased(i, k, "train") for i, k in enumerate(truth)]
    x = embed(texts, show_progress=False)
    dist = distributions(llm, [None] * len(llm), kinds)
    yours = np.arange(18)                      # the first 6 topics, every kind
    rest = np.arange(18, len(texts))
    r = relabel(x[rest], dist[rest], x[yours], dist[yours], [truth[i] for i in yours], keep=1.0)
    truth_rest = [truth[i] for i in rest]
    llm_acc = np.mean([llm[i] == truth[i] for i in rest])
    acc = np.mean([a == b for a, b in zip(r.labels, truth_rest)])
    assert r.features == "llm+embedding" and acc >= 0.9 > llm_acc, (acc, llm_acc)


def test_with_train_labels_alone_your_labels_validate_by_half_splits(folder, trusted_files, tmp_path):
    """No --validation-labels: the closed forms are scored on repeated half-splits of your labels (never on
    the folder's LLM-labelled validation split), no gradient training runs, and the export beats cosine."""
    from projector.train import train

    train_labels, _ = trusted_files
    out = tmp_path / "m"
    s = train(pairs=str(folder), out=str(out), train_labels=str(train_labels), **QUICK)
    assert "repeated half-splits" in s["validated_on"]["source"] and s["epochs_run"] == 0
    assert set(s["validation"]) == {"cosine", "lda", "lda+cosine-0.5", "lda+cosine-1", "lda+cosine-2"}
    assert s["selected"] != "cosine" and s["validation"][s["selected"]]["gain"]["beyond_noise"]
    projected, cosine = _test_map(out)
    assert projected > cosine + 0.2, (s["selected"], projected, cosine)
    # Platt on out-of-fold pairs: each repeat's scored half (9 of the 18 items: 36 pairs) x 5 repeats, not the
    # 153 pairs of all 18 labels in-sample, which the map fitted on them separates perfectly
    cal = s["validation"][s["selected"]]["calibration"]
    assert cal["pairs"] == 5 * 36, cal


def test_text_rows_are_matched_to_the_folders_items_or_taken_as_new_items(folder, tmp_path):
    items = {r["id"]: {"text": r["text"], "split": s} for s, rows in P.load_items(folder).items() for r in rows}
    f = write_labels(tmp_path / "l.jsonl", [{"text": item_text(TOPICS[0], "cli"), "label": "cli"},
                                            {"text": "A brand new program with windows.", "label": "gui"}])
    t = read_trusted_labels(f, items, list(KINDS))
    assert t.ids == ["p0#0", text_id("A brand new program with windows.")] and t.labels == ["cli", "gui"]


BAD = [
    ([], "no labelled items"),
    ([{"id": "p1#0", "label": "gui"}, {"id": "nope", "label": "cli"}], "'id' 'nope' is no item"),
    ([{"id": "p1#0", "label": "gui"}, {"id": "p45#0", "label": "cli"}], "is a test item"),
    ([{"id": "p1#0", "label": "gui"}, {"id": "p0#0", "label": "shell"}], "not in the label set"),
    ([{"id": "p1#0", "label": "gui"}, {"id": "p0#0"}], "no field 'label'"),
    ([{"id": "p1#0", "label": "gui"}, {"id": "p0#0", "label": ""}], "non-empty label name"),
    ([{"id": "p1#0", "label": "gui"}, {"id": "p4#0", "label": "gui"}], "needs items of at least two labels"),
    ([{"id": "p1#0", "label": "gui"}, {"id": "p1#0", "label": "cli"}], "keep one label per item"),
    ([{"id": "p1#0", "label": "gui"}, {"label": "cli"}], "give the item as 'id'"),
]


@pytest.mark.parametrize("rows,message", BAD, ids=[m for _, m in BAD])
def test_a_bad_trusted_label_file_is_one_line_naming_file_line_and_field_exit_2(folder, tmp_path, capsys, rows,
                                                                                message):
    from projector.train import main

    f = write_labels(tmp_path / "labels.jsonl", rows)
    out = tmp_path / "m"
    assert main(["--pairs", str(folder), "--out", str(out), "--train-labels", str(f), "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and str(f) in err[0], err
    if rows and message not in ("no labelled items", "needs items of at least two labels"):
        assert f"{f}:2" in err[0], err  # the line of the bad row
    assert not (out / "projector.json").exists()


def test_trusted_items_that_are_also_validation_items_are_warned_about(folder, tmp_path, caplog):
    from projector.train import train

    f = write_labels(tmp_path / "l.jsonl", [{"id": "p30#0", "label": "cli"}, {"id": "p31#0", "label": "gui"},
                                            {"id": "p0#0", "label": "cli"}, {"id": "p1#0", "label": "gui"}])
    with caplog.at_level("WARNING", logger="projector.train"):
        train(pairs=str(folder), out=str(tmp_path / "m"), train_labels=str(f), epochs=2, **QUICK)
    assert "2 of the 4 --train-labels items are also validation items" in caplog.text


def test_labels_on_a_qa_folder_are_refused_naming_the_flag(tmp_path, trusted_files):
    from projector.errors import ProjectorError
    from projector.train import train
    from test_train import make_qa_pairs

    qa = make_qa_pairs(tmp_path / "qa")
    with pytest.raises(ProjectorError, match="--train-labels applies to items"):
        train(pairs=str(qa), out=str(tmp_path / "m"), train_labels=str(trusted_files[0]), **QUICK)


def test_read_trusted_labels_names_a_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_trusted_labels(tmp_path / "missing.jsonl")


def test_the_llm_alone_trains_on_its_most_confident_labels_when_it_recorded_probabilities(tmp_path):
    """A folder labelled with probabilities and no labels of yours: the 30% most confident of the LLM's known
    train labels train (--llm-keep changes the fraction, --min-llm-confidence replaces it by a threshold)."""
    from projector.formats.corpus import Passage
    from projector.train import train

    rows = []
    for t, topic in enumerate(TOPICS):
        for k, kind in enumerate(KINDS):
            i, split = 3 * t + k, "train" if t < 10 else "validation" if t < 13 else "test"
            label = biased(i, kind, split)
            sure = 0.9 if label == kind else 0.4                   # right where confident, biased where not
            dist = {n: (sure if n == label else (1 - sure) / 2) for n in KINDS}
            rows.append(P.item_row(Passage(f"p{i}#0", f"p{i}", item_text(topic, kind)), label, split, dist))
    root = tmp_path / "attr"
    P.write_dataset(rows, root, P.ITEMS)
    (root / P.MANIFEST).write_text(json.dumps({"format": P.FORMAT, "format_version": P.FORMAT_VERSION,
                                               "task": "pairs", "layout": P.ITEMS, "corpus_fingerprint": "t"}))
    a = train(pairs=str(root), out=str(tmp_path / "a"), epochs=1, **QUICK)["trained_on"]
    assert a["llm_items_kept"] == {"items": 9, "fraction": 0.3, "by": pytest.approx(
        "the LLM's probability of its label, most confident first")}                # 30% of 30 train items
    b = train(pairs=str(root), out=str(tmp_path / "b"), epochs=1, llm_keep=0.5, **QUICK)["trained_on"]
    assert b["llm_items_kept"]["items"] == 15
    c = train(pairs=str(root), out=str(tmp_path / "c"), epochs=1, min_llm_confidence=0.5, **QUICK)["trained_on"]
    right = sum(1 for t in range(10) for k, kind in enumerate(KINDS) if biased(3 * t + k, kind, "train") == kind)
    assert c["llm_items_kept"] == {"items": right} and c["min_llm_confidence"] == 0.5
