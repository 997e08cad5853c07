"""The criterion demo's bundled data (data/debian-programs.jsonl + .criteria.json) and its maker script.

The bundled file must be what the demo (scripts/criterion_demo.sh) and ``evaluate --labelled`` need: unique ids,
both labels, a train and a test split, every interface class scoreable (>= 10 test items). The maker
(data/make_debian_programs.py) is checked on small synthetic items files made here, never on a benchmark copy
outside the repo.
"""
import hashlib
import json
import subprocess
import sys
from collections import Counter

import pytest

from projector.evaluate.labelled import read_labelled

CLASSES = ["commandline", "graphical", "daemon", "text-mode", "web"]


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _make(repo, *args):
    return subprocess.run([sys.executable, str(repo / "data" / "make_debian_programs.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_bundled_programs_are_well_formed(repo):
    path = repo / "data" / "debian-programs.jsonl"
    rows = _rows(path)
    assert 200 <= len(rows) <= 600
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert set(r) >= {"id", "text", "split", "labels"}
        assert isinstance(r["text"], str) and r["text"].strip()
        assert r["split"] in ("train", "test")
        assert set(r["labels"]) == {"interface", "section"} and all(r["labels"].values())
    for split in ("train", "test"):
        counts = Counter(r["labels"]["interface"] for r in rows if r["split"] == split)
        assert set(counts) == set(CLASSES), (split, counts)
    test = Counter(r["labels"]["interface"] for r in rows if r["split"] == "test")
    assert min(test.values()) >= 10, test
    # The evaluator reads it as is, every interface class scored.
    data = read_labelled(path, "interface", "test", 10)
    assert len(data.ids) == sum(test.values()) and set(data.labels) == set(CLASSES)

    crit = json.loads((repo / "data" / "debian-programs.criteria.json").read_text(encoding="utf-8"))
    assert set(crit) == {"interface", "section"}
    assert "user interface" in crit["interface"]["criterion"]
    assert sorted(set(crit["interface"]["labels"].values())) == sorted(CLASSES)  # every LLM name maps to a class
    assert set(crit["section"]["labels"].values()) <= {r["labels"]["section"] for r in rows}


def test_maker_reproduces_the_bundled_file_from_its_rows(repo, tmp_path):
    """Given the bundled rows as its items file (every one kept), the maker writes them back byte for byte."""
    bundled, crit = repo / "data" / "debian-programs.jsonl", repo / "data" / "debian-programs.criteria.json"
    per_split = max(Counter(r["split"] for r in _rows(bundled)).values())
    (tmp_path / "items.jsonl").write_text(bundled.read_text(encoding="utf-8"), encoding="utf-8")
    sentences = {c: v["criterion"] for c, v in json.loads(crit.read_text(encoding="utf-8")).items()}
    (tmp_path / "meta.json").write_text(json.dumps({"criteria": sentences}), encoding="utf-8")
    out = tmp_path / "debian-programs.jsonl"
    r = _make(repo, tmp_path / "items.jsonl", "--out", out, "--per-split", per_split)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == bundled.read_bytes()
    assert (tmp_path / "debian-programs.criteria.json").read_bytes() == crit.read_bytes()


def _synthetic(tmp_path):
    """Items of both splits; 'web' rare in test (3), 'daemon' rare in train (2); an extra label and field."""
    sizes = {"train": {"commandline": 30, "graphical": 20, "daemon": 2, "text-mode": 6, "web": 5},
             "test": {"commandline": 25, "graphical": 25, "daemon": 8, "text-mode": 6, "web": 3}}
    rows = []
    for split, classes in sizes.items():
        for c, n in classes.items():
            rows += [{"id": f"{split}-{c}-{i}", "version": "1.0-1", "text": f"program {i}: a {c} tool ({split})",
                      "split": split, "extra": 1, "labels": {"interface": c, "section": "utils", "other": "x"}}
                     for i in range(n)]
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps(r) + "\n" for r in rows[::-1]), encoding="utf-8")
    (tmp_path / "meta.json").write_text(json.dumps({"criteria": {"interface": "same interface",
                                                                  "section": "same area"}}), encoding="utf-8")
    return items, sizes


def test_maker_samples_each_split_with_a_floor_per_class(repo, tmp_path):
    items, sizes = _synthetic(tmp_path)
    out = tmp_path / "out" / "demo.jsonl"
    (tmp_path / "out").mkdir()
    r = _make(repo, items, "--out", out, "--per-split", 20, "--min-class", 4)
    assert r.returncode == 0, r.stderr
    rows = _rows(out)
    assert [x["id"] for x in rows] == sorted(x["id"] for x in rows)
    by_id = {x["id"]: x for x in map(json.loads, items.read_text().splitlines())}
    for x in rows:  # kept as they were, but only the two criteria and the documented fields
        src = by_id[x["id"]]
        assert x == {"id": src["id"], "version": "1.0-1", "text": src["text"], "split": src["split"],
                     "labels": {"interface": src["labels"]["interface"], "section": "utils"}}
    for split in ("train", "test"):
        got = Counter(x["labels"]["interface"] for x in rows if x["split"] == split)
        assert sum(got.values()) == 20
        for c, n in sizes[split].items():
            assert got[c] >= min(4, n), (split, c, got)  # the floor, or every item a rare class has
    # The floor items are the first of their class in the seeded hash order.
    order = sorted((x for x in by_id.values() if x["split"] == "test" and x["labels"]["interface"] == "daemon"),
                   key=lambda x: hashlib.sha256(f"0:{x['id']}".encode()).hexdigest())
    assert {x["id"] for x in order[:4]} <= {x["id"] for x in rows}
    crit = json.loads((tmp_path / "out" / "demo.criteria.json").read_text())
    assert crit["interface"]["criterion"] == "same interface" and crit["section"]["criterion"] == "same area"

    # Same input, same bytes; a larger sample keeps every item of the smaller one.
    again = tmp_path / "again.jsonl"
    assert _make(repo, items, "--out", again, "--per-split", 20, "--min-class", 4).returncode == 0
    assert again.read_bytes() == out.read_bytes()
    bigger = tmp_path / "bigger.jsonl"
    assert _make(repo, items, "--out", bigger, "--per-split", 30, "--min-class", 4).returncode == 0
    assert {x["id"] for x in rows} < {x["id"] for x in _rows(bigger)}
    other_seed = tmp_path / "seed1.jsonl"
    assert _make(repo, items, "--out", other_seed, "--per-split", 20, "--min-class", 4, "--seed", 1).returncode == 0
    assert other_seed.read_bytes() != out.read_bytes()


@pytest.mark.parametrize("row, field", [
    ({"id": "a", "text": "t", "split": "train", "labels": {"section": "utils"}}, "labels.interface"),
    ({"id": "a", "text": "t", "split": "dev", "labels": {"section": "utils", "interface": "web"}}, "split"),
    ({"id": "a", "split": "train", "labels": {"section": "utils", "interface": "web"}}, "text"),
])
def test_maker_bad_row_is_one_line_exit_2_and_writes_nothing(repo, tmp_path, row, field):
    items = tmp_path / "items.jsonl"
    good = {"id": "ok", "text": "fine", "split": "test", "labels": {"section": "utils", "interface": "web"}}
    items.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    (tmp_path / "meta.json").write_text(json.dumps({"criteria": {"interface": "i", "section": "s"}}))
    out = tmp_path / "out.jsonl"
    r = _make(repo, items, "--out", out)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{items}:2" in lines[0] and field in lines[0], r.stderr
    assert not out.exists()


def test_maker_refuses_a_duplicate_id_and_a_missing_meta(repo, tmp_path):
    items = tmp_path / "items.jsonl"
    row = {"id": "a", "text": "t", "split": "test", "labels": {"section": "utils", "interface": "web"}}
    items.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    r = _make(repo, items, "--out", tmp_path / "out.jsonl")
    assert r.returncode == 2 and "appears twice" in r.stderr and f"{items}:2" in r.stderr
    items.write_text(json.dumps(row) + "\n", encoding="utf-8")
    r = _make(repo, items, "--out", tmp_path / "out.jsonl")
    assert r.returncode == 2 and "meta.json" in r.stderr and not (tmp_path / "out.jsonl").exists()
