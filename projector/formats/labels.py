"""Labels you trust: items that you (or your users, or a curated source) placed under the criterion yourselves.

    LABELS.jsonl   one JSON object a line:
                     "id"     an item of the items folder (its ``id`` column, a passage id ``DOC#k``; a
                              document of one passage may be named by its document id ``DOC``), or
                     "text"   the item's text (an item the folder does not hold is taken as it is)
                     "label"  its value under the criterion: one of the folder's label set when it has one

``train --train-labels`` trains on them (alone, or beside the LLM's labels with ``--keep-llm-train``);
``train --validation-labels`` validates, selects, early-stops and calibrates on them instead of the folder's
validation split, which the LLM labelled. ``generate --trusted-labels`` asks the LLM about them first and says
how often it agrees (``projector.generate.attribute``). This module owns the format: ``read_trusted_labels``
returns ``TrustedLabels``; bad input is one DataError naming the file, line and field.

    from projector.formats.labels import read_trusted_labels
    trusted = read_trusted_labels("my-labels.jsonl", items)   # items: id -> {"text", "split"} of the folder
    trusted.ids, trusted.texts, trusted.labels
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from projector.errors import DataError
from projector.formats.corpus import read_jsonl

UNKNOWN = "unknown"  # the items layout's label of an item nobody could place (projector.formats.pairs.UNKNOWN)


@dataclass
class TrustedLabels:
    source: str             # the file, as given
    ids: list[str]          # the folder's item id, or "text:<sha256[:16]>" for a text the folder does not hold
    texts: list[str]
    labels: list[str]
    lines: list[int] = field(default_factory=list)  # 1-based line of each row in the file
    own_names: bool = False  # the labels are none of the folder's label set's names (another vocabulary)

    def __len__(self) -> int:
        return len(self.ids)

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.labels))


def text_id(text: str) -> str:
    """The id of a labelled text the items folder does not hold (stable: the same text, the same id)."""
    return "text:" + hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:16]


def read_trusted_labels(path, items: dict[str, dict] | None = None, label_names=None, role: str = "train") -> TrustedLabels:
    """The labelled items of ``path`` (the module docstring's format).

    ``items``: the folder's items, id -> {"text", "split"}: an ``id`` must be one of them, and none may be a
    test item (nothing trains or validates on test items). ``label_names``: the folder's label set; a file
    that uses its names must use only them (a label outside it is refused), a file that uses none of them has
    labels of its own (``own_names``). ``role`` ("train" or "validation") only words the errors.
    """
    path = Path(path)
    flag = f"--{role}-labels"
    if not path.is_file():
        raise DataError(f"{path}: no such file ({flag}: JSON lines with 'id' or 'text', and 'label').")
    items = items or {}
    by_text = {" ".join(str(r["text"]).split()): i for i, r in items.items()}
    names = {str(n) for n in label_names} if label_names else None
    out = TrustedLabels(str(path), [], [], [], [])
    seen: dict[str, tuple[str, str]] = {}
    for where, row in read_jsonl(path, DataError):
        line = int(where.rsplit(":", 1)[1])  # read_jsonl's "path:line"
        if "label" not in row:
            raise DataError(f"{where}: no field 'label' (fields: {sorted(row)}); every row needs its label.")
        label = row["label"]
        if not isinstance(label, str) or not label.strip():
            raise DataError(f"{where}: field 'label' must be a non-empty label name, got {label!r:.60}.")
        label = " ".join(label.split())
        if label.lower() == UNKNOWN:
            raise DataError(f"{where}: field 'label' is {UNKNOWN!r}: leave out the items you cannot place.")
        if "id" in row:
            item_id = str(row["id"])
            if item_id not in items and f"{item_id}#0" in items and f"{item_id}#1" not in items:
                item_id = f"{item_id}#0"  # a document of one passage, named by its document id
            if item_id not in items:
                hint = f"; ids look like {next(iter(items))!r}" if items else ""
                raise DataError(f"{where}: field 'id' {item_id!r} is no item of the items folder{hint} "
                                "(give the item's 'text' instead for an item the folder does not hold).")
            text = str(items[item_id]["text"])
        elif isinstance(row.get("text"), str) and row["text"].strip():
            text = " ".join(row["text"].split())
            item_id = by_text.get(text) or text_id(text)
        else:
            raise DataError(f"{where}: give the item as 'id' (of the items folder) or 'text' (fields: {sorted(row)}).")
        if items.get(item_id, {}).get("split") == "test":
            raise DataError(f"{where}: field 'id' {item_id!r} is a test item of the items folder: nothing trains or "
                            "validates on test items (label train items, or others the folder does not hold).")
        if item_id in seen:
            if seen[item_id][0] != label:
                raise DataError(f"{where}: item {item_id!r} is labelled {label!r} here and {seen[item_id][0]!r} at "
                                f"{seen[item_id][1]}; keep one label per item.")
            continue
        seen[item_id] = (label, where)
        out.ids.append(item_id)
        out.texts.append(text)
        out.labels.append(label)
        out.lines.append(line)
    if not out.ids:
        raise DataError(f"{path}: no labelled items (one JSON object a line: 'id' or 'text', and 'label').")
    if names is not None and (outside := [k for k, v in enumerate(out.labels) if v not in names]):
        if len(outside) < len(out.labels):  # the file uses the label set's names, but not here: a slip
            k = outside[0]
            raise DataError(f"{path}:{out.lines[k]}: field 'label' {out.labels[k]!r} is not in the label set "
                            f"{sorted(names)} (the items folder's; fix the label, or generate with --labels naming "
                            "it).")
        out.own_names = True  # none of the set's names: labels of your own (a label model maps the LLM onto them)
    if len(set(out.labels)) < 2:
        raise DataError(f"{path}: every item has the label {out.labels[0]!r}; a criterion needs items of at least "
                        "two labels (one class teaches no difference).")
    return out
