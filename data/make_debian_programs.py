"""Rebuild data/debian-programs.jsonl (+ .criteria.json): Debian programs with their human labels, for the
criterion demo (scripts/criterion_demo.sh) -- "are these two programs the same kind of interface?".

    python data/make_debian_programs.py ITEMS.jsonl [--meta META.json] [--per-split 150] [--min-class 10]

ITEMS.jsonl: one Debian program a line, ``id`` (package), ``version``, ``text`` (synopsis + long description),
``split`` (train / test), ``labels`` {``section``, ``interface``}; META.json (default: beside it) holds the
criterion sentence for each label under ``criteria``. Such a file is built from the Debian 12 "bookworm" main
archive index: ``Packages`` (``Section``; ``Tag``, the debtags ``interface::`` facet, x11 merged into
graphical) and ``i18n/Translation-en`` (the descriptions), ``role::program`` packages only, one binary per
source package, one value per facet, the split fixed by a hash of the package name.

The sample: per split, the items ordered by sha256(seed:id); first the first ``--min-class`` of every
interface class (so that each class can be scored: the evaluation drops classes under 10 items), then the
next items in that order up to ``--per-split``. Same input, same output. The labels are Debian's, used only
to score; the demo never shows them to the LLM.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from projector.formats.corpus import read_jsonl  # noqa: E402
from projector.errors import DataError, ProjectorError  # noqa: E402
from projector.files import write_json, write_text  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "debian-programs.jsonl"
CRITERIA = ("interface", "section")
SPLITS = ("train", "test")
# The names the LLM is given for each criterion (the wording of its criterion sentence), with the Debian value
# each stands for (the mapping is used only to score the LLM's labels).
LABELS = {
    "interface": {"command-line tool": "commandline", "graphical desktop application": "graphical",
                  "text-mode (full-screen terminal) program": "text-mode", "background daemon or service": "daemon",
                  "web application": "web"},
    "section": {"games": "games", "networking": "net", "system administration": "admin", "development": "devel",
                "science": "science", "sound": "sound", "graphics": "graphics", "text processing": "text",
                "mail": "mail", "web": "web", "utilities": "utils"},
}


def read_items(path) -> list[dict]:
    """The rows of ITEMS.jsonl, checked: a DataError naming file, line and field for a bad one."""
    rows, seen = [], {}
    for where, r in read_jsonl(path, error=DataError):
        for field in ("id", "text", "split", "labels"):
            if field not in r:
                raise DataError(f"{where}: missing field {field!r} (each row: id, text, split, labels)")
        if not isinstance(r["text"], str) or not r["text"].strip():
            raise DataError(f"{where}: field 'text' must be a non-empty string")
        if r["split"] not in SPLITS:
            raise DataError(f"{where}: field 'split' is {r['split']!r}; expected one of {', '.join(SPLITS)}")
        labels = r["labels"] if isinstance(r["labels"], dict) else {}
        for c in CRITERIA:
            if not isinstance(labels.get(c), str) or not labels[c]:
                raise DataError(f"{where}: field 'labels.{c}' missing or not a string (labels: {r['labels']!r})")
        rid = str(r["id"])
        if rid in seen:
            raise DataError(f"{where}: id {rid!r} appears twice (first at {seen[rid]})")
        seen[rid] = where
        rows.append(r)
    if not rows:
        raise DataError(f"{path}: no items")
    return rows


def sample(rows: list[dict], per_split: int, min_class: int, seed: int = 0) -> list[dict]:
    """Per split: ``min_class`` items of every interface class (all it has when fewer), then the rest in
    hash order up to ``per_split``; the result sorted by id."""
    chosen = []
    for split in SPLITS:
        order = sorted((r for r in rows if r["split"] == split),
                       key=lambda r: hashlib.sha256(f"{seed}:{r['id']}".encode()).hexdigest())
        per_class = Counter()
        floor = []  # the first min_class items of every class, in hash order
        for r in order:
            if per_class[r["labels"]["interface"]] < min_class:
                per_class[r["labels"]["interface"]] += 1
                floor.append(r["id"])
        taken = set(floor[:per_split])
        for r in order:  # then the rest, in the same order
            if len(taken) >= per_split:
                break
            taken.add(r["id"])
        chosen += [r for r in order if r["id"] in taken]
    return sorted(chosen, key=lambda r: str(r["id"]))


def criteria(meta_path) -> dict:
    """The criterion sentence of each label (from META.json) with the label names the LLM is given."""
    meta_path = Path(meta_path)
    if not meta_path.is_file():
        raise DataError(f"{meta_path} not found: pass --meta, the benchmark's meta.json (criteria sentences)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    out = {}
    for c in CRITERIA:
        sentence = (meta.get("criteria") or {}).get(c)
        if not isinstance(sentence, str) or not sentence:
            raise DataError(f"{meta_path}: no criteria.{c} sentence")
        out[c] = {"criterion": sentence, "labels": LABELS[c]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("items", help="a debian-pkgs items.jsonl (id, version, text, split, labels)")
    ap.add_argument("--meta", help="meta.json with the criterion sentences (default: beside ITEMS)")
    ap.add_argument("--out", default=str(OUT), help="output JSONL; the criteria go beside it as STEM.criteria.json")
    ap.add_argument("--per-split", type=int, default=150, help="items per split (train, test)")
    ap.add_argument("--min-class", type=int, default=10, help="items of every interface class first, per split")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        rows = sample(read_items(a.items), a.per_split, a.min_class, a.seed)
        crit = criteria(a.meta or Path(a.items).parent / "meta.json")
    except ProjectorError as e:
        print(f"make_debian_programs: error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    keep = ("id", "version", "text", "split")
    write_text(out, "".join(json.dumps({**{k: r[k] for k in keep if k in r},
                                        "labels": {c: r["labels"][c] for c in CRITERIA}}, ensure_ascii=False) + "\n"
                            for r in rows))
    write_json(out.with_name(out.stem + ".criteria.json"), crit)
    for split in SPLITS:
        c = Counter(r["labels"]["interface"] for r in rows if r["split"] == split)
        print(f"{split}: {sum(c.values())} items, interface " + ", ".join(f"{k} {v}" for k, v in c.most_common()))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
