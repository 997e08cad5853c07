"""projector.formats.pairs: a pairs folder written the way generate writes it loads back unchanged; a damaged one is
one DataError line naming the file (and line) and what to do."""
import json
import shutil

import pytest

from projector.formats import pairs as P
from projector.formats.corpus import Passage
from projector.errors import DataError

PASSAGES = [Passage(f"d{i}#0", f"d{i}", f"Passage {i} about topic {i}.", title=f"T{i}") for i in range(6)]
SPLIT = {"d0#0": "train", "d1#0": "train", "d2#0": "train", "d3#0": "validation", "d4#0": "test", "d5#0": "test"}


def write_folder(root, task="qa"):
    """A pairs folder through the writer generate uses (rows, dataset + parquet, passages, manifest)."""
    root.mkdir(parents=True, exist_ok=True)
    passages = [Passage(p.passage_id, p.doc_id, p.text, p.title) for p in PASSAGES]
    passages[0].original_text = "The text before --rewrite."
    if task == "qa":
        rows = [r for p in passages for r in P.qa_rows(p, [f"what is {p.passage_id}?", f"why {p.passage_id}?"],
                                                         SPLIT[p.passage_id])]
    else:
        by_split = {}
        for p in passages:
            by_split.setdefault(SPLIT[p.passage_id], []).append(p)
        rows = []
        for split, ps in by_split.items():
            rows += [P.pair_row(ps[0], ps[0], True, "same", split), P.pair_row(ps[0], ps[-1], False, "", split)]
    P.write_passages(passages, root / P.PASSAGES)
    P.write_dataset(rows, root, task)
    (root / P.MANIFEST).write_text(json.dumps({"format": P.FORMAT, "format_version": P.FORMAT_VERSION,
                                               "task": task, "corpus_fingerprint": "fp"}))
    return root, passages, rows


def test_qa_folder_round_trip(tmp_path):
    root, passages, rows = write_folder(tmp_path / "qa")
    again = P.read_passages(root / P.PASSAGES)
    assert [(p.passage_id, p.doc_id, p.title, p.text, p.original_text) for p in again] == \
           [(p.passage_id, p.doc_id, p.title, p.text, p.original_text) for p in passages]
    pairs = P.load_pairs(root)
    assert pairs.task == "qa" and pairs.manifest["corpus_fingerprint"] == "fp"
    assert pairs.passage_ids == [p.passage_id for p in passages] and pairs.passage_texts == [p.text for p in passages]
    for split in P.SPLITS:
        want = [r for r in rows if r["split"] == split]
        assert pairs.splits[split] == {"query": [r["query"] for r in want], "passage_id": [r["passage_id"] for r in want]}
        ds = P.load_split(root, split)  # every column generate writes, in its order
        assert ds.column_names == list(P.COLUMNS["qa"])
        assert ds.to_list() == [{c: r[c] for c in P.COLUMNS["qa"]} for r in want]
    import pyarrow.parquet as pq

    assert pq.read_table(root / P.PARQUET / "train.parquet").to_pylist() == P.load_split(root, "train").to_list()
    assert P.has_test_rows(pairs)
    assert P.load_pairs(root).fingerprint == pairs.fingerprint  # the same folder, the same fingerprint


def test_read_rows_gives_back_what_was_written_and_a_rewritten_subset_loads(tmp_path):
    root, _, rows = write_folder(tmp_path / "qa")
    read = P.read_rows(root)
    assert read == [{c: r[c] for c in (*P.COLUMNS["qa"], "split")} for s in P.SPLITS for r in rows if r["split"] == s]
    # a copy whose train split keeps one passage's questions, written by the format's own writer
    (root / "config.json").write_text('{"seed": 0}')
    P.write_copy(root, tmp_path / "sub", [r for r in read if r["split"] != "train" or r["passage_id"] == "d1#0"])
    pairs = P.load_pairs(tmp_path / "sub")
    assert pairs.splits["train"]["passage_id"] == ["d1#0", "d1#0"]
    assert pairs.splits["validation"] == P.load_pairs(root).splits["validation"]
    assert pairs.manifest == P.read_manifest(root) and pairs.passage_ids == P.load_pairs(root).passage_ids
    assert (tmp_path / "sub" / "config.json").read_text() == '{"seed": 0}'  # a resume of generate checks it
    # with a manifest of its own (a tool noting what it did)
    P.write_copy(root, tmp_path / "noted", read, {**P.read_manifest(root), "note": "kept all"})
    assert P.read_manifest(tmp_path / "noted")["note"] == "kept all"
    assert P.read_rows(tmp_path / "noted") == read


def test_labelled_pairs_round_trip(tmp_path):
    root, _, rows = write_folder(tmp_path / "pairs", task="pairs")
    pairs = P.load_pairs(root)
    assert pairs.task == "pairs" and pairs.passage_ids == []  # symmetric task: no retrieval corpus needed
    train = [r for r in rows if r["split"] == "train"]
    assert pairs.splits["train"]["label"] == [1, 0] == [r["label"] for r in train]
    assert pairs.splits["train"]["text_b"] == [r["text_b"] for r in train]
    assert P.load_split(root, "train").column_names == list(P.COLUMNS["pairs"])


def _bad_json_line(root):
    lines = (root / P.PASSAGES).read_text().splitlines()
    lines[2] = '{"passage_id": "d2#0", "text": '
    (root / P.PASSAGES).write_text("\n".join(lines) + "\n")


def _no_text(root):
    lines = (root / P.PASSAGES).read_text().splitlines()
    lines[1] = json.dumps({"passage_id": "d1#0"})
    (root / P.PASSAGES).write_text("\n".join(lines) + "\n")


def _duplicate_id(root):
    lines = (root / P.PASSAGES).read_text().splitlines()
    (root / P.PASSAGES).write_text("\n".join(lines + [lines[0]]) + "\n")


def _unknown_passage(root):
    lines = (root / P.PASSAGES).read_text().splitlines()
    (root / P.PASSAGES).write_text("\n".join(lines[1:]) + "\n")  # d0#0 is asked about in train but gone


def _future_version(root):
    m = json.loads((root / P.MANIFEST).read_text())
    (root / P.MANIFEST).write_text(json.dumps({**m, "format_version": P.FORMAT_VERSION + 1}))


DAMAGE = {
    "no manifest": (lambda r: (r / P.MANIFEST).unlink(), r"manifest.json not found: pass --pairs a folder"),
    "manifest not JSON": (lambda r: (r / P.MANIFEST).write_text("{task: qa"), r"manifest.json is not valid JSON"),
    "unknown task": (lambda r: (r / P.MANIFEST).write_text('{"task": "rank"}'), r"'task' must be 'qa' or 'pairs'"),
    "newer format": (_future_version, r"format_version 2; this projector reads 1: upgrade projector"),
    "no passages": (lambda r: (r / P.PASSAGES).unlink(), r"passages.jsonl not found: task qa needs"),
    "bad JSON line": (_bad_json_line, r"passages.jsonl:3: invalid JSON"),
    "no text field": (_no_text, r"passages.jsonl:2: need a JSON object with 'passage_id' and 'text'.*missing \['text'\]"),
    "duplicate id": (_duplicate_id, r"passages.jsonl: passage_id values must be unique"),
    "unknown passage": (_unknown_passage, r"train: passage_id \['d0#0'\] not in passages.jsonl"),
    "no dataset": (lambda r: shutil.rmtree(r / P.DATASET), r"dataset not found; run projector.generate"),
    "torn dataset": (lambda r: (r / P.DATASET / "dataset_dict.json").write_text("{"),
                     r"cannot read .*dataset as a datasets.DatasetDict"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_folder_is_one_clear_error(tmp_path, damage):
    root, _, _ = write_folder(tmp_path / "qa")
    hurt, message = DAMAGE[damage]
    hurt(root)
    with pytest.raises(DataError, match=message) as e:
        P.load_pairs(root)
    assert "\n" not in str(e.value) and str(root) in str(e.value)


def test_load_split_names_the_choices(tmp_path):
    root, _, _ = write_folder(tmp_path / "qa")
    with pytest.raises(DataError, match=r"split 'dev' not in .*choose one of \['test', 'train', 'validation'\]"):
        P.load_split(root, "dev")


def write_items(root, labels=("alpha", "beta", P.UNKNOWN, "alpha", "beta", "alpha")):
    """A folder of layout items (generate --judge attribute) through the same writer."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [P.item_row(p, lab, SPLIT[p.passage_id]) for p, lab in zip(PASSAGES, labels)]
    P.write_dataset(rows, root, P.ITEMS)
    (root / P.MANIFEST).write_text(json.dumps({"format": P.FORMAT, "format_version": P.FORMAT_VERSION,
                                               "task": "pairs", "layout": P.ITEMS, "corpus_fingerprint": "fp"}))
    return root, rows


def test_items_folder_round_trip_and_the_pair_loader_refuses_it(tmp_path):
    root, rows = write_items(tmp_path / "items")
    items = P.load_items(root)
    for split in P.SPLITS:
        assert items[split] == [{"id": r["id"], "text": r["text"], "label": r["label"]} for r in rows
                                if r["split"] == split]
    assert P.load_split(root, "train").column_names == list(P.COLUMNS[P.ITEMS])  # label names stay strings
    with pytest.raises(DataError, match="load_items"):
        P.load_pairs(root)
    qa, _, _ = write_folder(tmp_path / "qa")
    with pytest.raises(DataError, match="not 'items'"):
        P.load_items(qa)


def test_a_bad_items_folder_is_one_clear_error(tmp_path):
    root, _ = write_items(tmp_path / "dup", labels=("a", "b", "a", "b", "a", "b"))
    m = json.loads((root / P.MANIFEST).read_text())
    (root / P.MANIFEST).write_text(json.dumps({**m, "layout": "bundles"}))
    with pytest.raises(DataError, match="'layout' 'bundles'"):
        P.load_items(root)
    root, _ = write_items(tmp_path / "empty", labels=("a", "", "a", "b", "a", "b"))
    with pytest.raises(DataError, match=r"train row 1: field 'label'"):
        P.load_items(root)
