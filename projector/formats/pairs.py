"""The pairs folder: the contract between ``projector.generate`` and every stage after it.

    PAIRS/manifest.json          format "projector.pairs", format_version, task ("qa" | "pairs"), layout
                                 (absent: the task's own; "items" for ``--judge attribute``), corpus
                                 fingerprint, prompts, counts (the rest is generate's run record)
    PAIRS/passages.jsonl         the retrieval corpus, one JSON object per line:
                                 {"passage_id", "doc_id", "title", "text"[, "original_text"]}
    PAIRS/dataset/               datasets.DatasetDict train/validation/test (``save_to_disk``), ``COLUMNS[layout]``
    PAIRS/parquet/<split>.parquet  the same splits as Parquet

Layouts: "qa" (query -> passage rows; ``projector.teach`` adds the optional column ``negatives``, the passage
ids the LLM judged not to answer the row's query), "pairs" (judged pairs, label 0/1) and "items" (task pairs judged with
``--judge attribute``: one row per item, ``id``, ``text``, ``label`` (a label name, ``UNKNOWN`` when the LLM
was unsure), ``split``; the pairs are implied: two items with the same known label are similar).

This module owns that format: its version, the columns of each layout, writing (``qa_rows``/``pair_row``/
``item_row``, ``write_dataset``, ``write_passages``, ``write_copy``) and reading (``read_manifest``, ``layout_of``,
``read_passages``, ``load_split``, ``load_pairs``, ``load_items``, ``read_rows``). Every problem with a folder is one
DataError naming the file and what to do.

    from projector.formats.pairs import load_pairs
    pairs = load_pairs("runs/quickstart/pairs")       # Pairs: manifest, passages, splits as column lists
    pairs = load_pairs("runs/attr", items=True)        # also an items folder: splits of id, text, label
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from projector.formats.corpus import Passage, read_jsonl
from projector.errors import DataError
from projector.files import naming, write_text

FORMAT = "projector.pairs"  # on-disk name since the first folders (not the module's path: it must not move)
READ_FORMATS = (FORMAT, "projector.formats.pairs")  # + what the redesign's rename wrote for a while
FORMAT_VERSION = 1
TASKS = ("qa", "pairs")
SPLITS = ("train", "validation", "test")
MANIFEST, PASSAGES, DATASET, PARQUET = "manifest.json", "passages.jsonl", "dataset", "parquet"
ITEMS = "items"  # the layout of --judge attribute (task "pairs")
LAYOUTS = (*TASKS, ITEMS)
UNKNOWN = "unknown"  # items layout: the label of an item the LLM could not place (takes part in no pair)
COLUMNS = {"qa": ("query", "passage", "passage_id", "doc_id", "title", "question_index"),  # what generate writes
           "pairs": ("text_a", "text_b", "id_a", "id_b", "label", "reason"),
           ITEMS: ("id", "text", "label", "split")}
REQUIRED = {"qa": ("query", "passage_id"), "pairs": ("text_a", "text_b", "id_a", "id_b", "label"),  # what is read
            ITEMS: ("id", "text", "label")}
_INTEGER_COLUMNS = {"qa": ("question_index",), "pairs": ("label",), ITEMS: ()}  # items: label names (strings)
OPTIONAL = {"qa": ("negatives",)}  # written when the rows have them, read when the dataset has them (lists of ids)


# ---------------------------------------------------------------------------------------------- writing


def qa_rows(passage: Passage, questions: list[str], split: str) -> list[dict]:
    """Dataset rows of task qa: one per question, each pointing at the passage that answers it."""
    return [{"query": q, "passage": passage.text, "passage_id": passage.passage_id, "doc_id": passage.doc_id,
             "title": passage.title, "question_index": i, "split": split} for i, q in enumerate(questions)]


def pair_row(a: Passage, b: Passage, similar: bool, reason: str, split: str) -> dict:
    """A dataset row of task pairs: two texts and the judged label."""
    return {"text_a": a.text, "text_b": b.text, "id_a": a.passage_id, "id_b": b.passage_id,
            "label": int(similar), "reason": reason, "split": split}


def item_row(item: Passage, label: str, split: str) -> dict:
    """A dataset row of layout items: one item and the label the LLM named for it (``UNKNOWN`` kept)."""
    return {"id": item.passage_id, "text": item.text, "label": label, "split": split}


def write_dataset(rows: list[dict], out: Path, layout: str) -> None:
    """OUT/dataset (a DatasetDict) + OUT/parquet/<split>.parquet, each written to a temp path and renamed."""
    import datasets

    datasets.disable_progress_bars()  # generate's own summary says what was written
    optional = tuple(c for c in OPTIONAL.get(layout, ()) if any(c in r for r in rows))  # a row without it: []
    columns = COLUMNS[layout] + optional
    features = datasets.Features({c: datasets.Sequence(datasets.Value("string")) if c in OPTIONAL.get(layout, ())
                                  else datasets.Value("int64" if c in _INTEGER_COLUMNS[layout] else "string")
                                  for c in columns})
    splits = {}
    for split in SPLITS:
        part = [r for r in rows if r["split"] == split]
        splits[split] = datasets.Dataset.from_dict({c: [r.get(c, []) if c in optional else r[c] for r in part]
                                                    for c in columns}, features=features)
    dd = datasets.DatasetDict(splits)
    tmp = out / f"{DATASET}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    # One shard per split even when empty: datasets cannot load back a split saved with zero shards.
    with naming(out / DATASET):
        dd.save_to_disk(str(tmp), num_shards={split: 1 for split in dd})
    shutil.rmtree(out / DATASET, ignore_errors=True)
    os.replace(tmp, out / DATASET)
    (out / PARQUET).mkdir(exist_ok=True)
    for split, d in dd.items():
        with naming(out / PARQUET / f"{split}.parquet"):
            d.to_parquet(str(out / PARQUET / f"{split}.parquet.tmp"))
        os.replace(out / PARQUET / f"{split}.parquet.tmp", out / PARQUET / f"{split}.parquet")


def write_passages(passages: list[Passage], path) -> None:
    """Write passages.jsonl atomically (temp file + rename)."""
    lines = []
    for p in passages:
        row = {"passage_id": p.passage_id, "doc_id": p.doc_id, "title": p.title, "text": p.text}
        if p.original_text is not None:
            row["original_text"] = p.original_text
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    write_text(path, "".join(lines))


def write_copy(src, dst, rows: list[dict], manifest: dict | None = None) -> None:
    """DST: the folder SRC with its dataset replaced by ``rows`` (``read_rows``' shape: a subset, a filtered
    train split). passages.jsonl and generate's config.json are copied; the manifest is SRC's, or ``manifest``."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for name in (PASSAGES, "config.json"):  # config.json: what a resume of generate would check
        if (src / name).is_file():
            write_text(dst / name, (src / name).read_text())
    manifest = read_manifest(src) if manifest is None else manifest
    write_text(dst / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    write_dataset(rows, dst, layout_of(manifest))


# ---------------------------------------------------------------------------------------------- reading


def read_passages(path) -> list[Passage]:
    """The passages of a passages.jsonl, in order; ids must be unique."""
    path = Path(path)
    passages = []
    for where, row in read_jsonl(path, error=DataError):
        missing = [k for k in ("passage_id", "text") if k not in row]
        if missing or not isinstance(row["text"], str):
            raise DataError(f"{where}: need a JSON object with 'passage_id' and 'text' (a string)"
                            f"{f', missing {missing}' if missing else ''}; re-run projector.generate")
        passages.append(Passage(passage_id=str(row["passage_id"]), doc_id=str(row.get("doc_id", "")), text=row["text"],
                                title=row.get("title") or "", original_text=row.get("original_text")))
    if len({p.passage_id for p in passages}) != len(passages):
        raise DataError(f"{path}: passage_id values must be unique")
    return passages


def read_manifest(path) -> dict:
    """PAIRS/manifest.json, its format, version and task checked."""
    mpath = Path(path) / MANIFEST
    if not mpath.is_file():
        raise DataError(f"{mpath} not found: pass --pairs a folder written by python -m projector.generate")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:  # JSONDecodeError, UnicodeDecodeError, unreadable
        raise DataError(f"{mpath} is not valid JSON ({e}); re-run projector.generate") from e
    if not isinstance(manifest, dict):
        raise DataError(f"{mpath} is not a JSON object; re-run projector.generate")
    if manifest.get("format", FORMAT) not in READ_FORMATS:
        raise DataError(f"{mpath}: format {manifest['format']!r} is not a pairs folder ({FORMAT!r})")
    version = manifest.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise DataError(f"{mpath}: format_version {version!r}; this projector reads {FORMAT_VERSION}: "
                        "upgrade projector or re-run projector.generate")
    if manifest.get("task") not in TASKS:
        raise DataError(f"{mpath}: 'task' must be 'qa' or 'pairs', got {manifest.get('task')!r}")
    if layout_of(manifest) not in LAYOUTS or (layout_of(manifest) == ITEMS and manifest["task"] != "pairs"):
        raise DataError(f"{mpath}: 'layout' {manifest.get('layout')!r} is not one of {list(LAYOUTS)} "
                        f"for task {manifest['task']!r}; re-run projector.generate")
    return manifest


def layout_of(manifest: dict) -> str:
    """The folder's layout: the manifest's "layout" (items), else its task (folders made before layouts)."""
    return manifest.get("layout") or manifest.get("task")


def _open_dataset(path):
    """PAIRS/dataset as a datasets.DatasetDict."""
    from datasets import DatasetDict, load_from_disk

    dpath = Path(path) / DATASET
    if not dpath.is_dir():
        raise DataError(f"{dpath} not found; run projector.generate to completion first")
    try:
        dd = load_from_disk(str(dpath))
    except Exception as e:  # datasets raises many types; the CLI still tells a full disk from bad data
        raise DataError(f"cannot read {dpath} as a datasets.DatasetDict ({e}); re-run projector.generate") from e
    if not isinstance(dd, DatasetDict):
        raise DataError(f"{dpath} holds a single Dataset, not a DatasetDict of splits; re-run projector.generate")
    return dd


def load_split(path, split: str):
    """One non-empty split of PAIRS/dataset as a datasets.Dataset."""
    dd = _open_dataset(path)
    dpath = Path(path) / DATASET
    if split not in dd:
        raise DataError(f"split {split!r} not in {dpath}; choose one of {sorted(dd)}")
    if len(dd[split]) == 0:
        raise DataError(f"split {split!r} of {dpath} is empty; generate more pairs or choose another split")
    return dd[split]


def read_rows(path) -> list[dict]:
    """Every row of PAIRS/dataset, split by split, each a dict of all its columns plus "split": the rows
    ``write_dataset`` takes, so that a changed copy of a folder (a subset, a filtered train split) is written
    by this module's one writer rather than by each tool through ``datasets``."""
    dd = _open_dataset(path)
    return [dict(row) | {"split": split} for split in SPLITS if split in dd for row in dd[split]]


@dataclass
class Pairs:
    """A pairs folder read into memory: manifest, corpus passages, and the dataset splits as column dicts."""

    path: Path
    task: str
    manifest: dict
    passage_ids: list[str]  # task qa: the retrieval corpus (empty for task pairs)
    passage_texts: list[str]
    splits: dict[str, dict[str, list]]  # split -> column -> values (REQUIRED[layout] columns)
    fingerprint: str  # of the corpus and the dataset's contents
    layout: str  # "qa", "pairs" or "items" (``layout_of``)


def load_pairs(path, items: bool = False) -> Pairs:
    """Read and check a pairs folder; every problem is a DataError naming the file and what to fix.

    ``items``: a folder of layout items is read too (its splits then hold the columns ``id``, ``text``,
    ``label``); otherwise it is refused, naming ``load_items``."""
    path = Path(path)
    manifest = read_manifest(path)
    task = manifest["task"]
    if layout_of(manifest) == ITEMS:
        if not items:
            raise DataError(f"{path / MANIFEST}: labelled items (generate --judge attribute), not pairs; read "
                            "them with projector.formats.pairs.load_items (projector.train reads both)")
        return _items_as_pairs(path, manifest)
    ids, texts = [], []
    if task == "qa":
        ppath = path / PASSAGES
        if not ppath.is_file():
            raise DataError(f"{ppath} not found: task qa needs the retrieval corpus; re-run projector.generate")
        passages = read_passages(ppath)
        ids, texts = [p.passage_id for p in passages], [p.text for p in passages]
    dd = _open_dataset(path)
    dpath = path / DATASET
    splits = {}
    for split in SPLITS:
        if split not in dd:
            if split == "test":
                continue
            raise DataError(f"{dpath}: split {split!r} is missing; generate with a validation fraction > 0")
        missing = [c for c in REQUIRED[task] if c not in dd[split].column_names]
        if missing:
            raise DataError(f"{dpath}/{split}: missing column(s) {missing} for task {task!r} "
                            f"(has {dd[split].column_names})")
        present = [c for c in OPTIONAL.get(task, ()) if c in dd[split].column_names]
        splits[split] = {c: list(dd[split][c]) for c in (*REQUIRED[task], *present)}
    for split in ("train", "validation"):
        if not splits[split][REQUIRED[task][0]]:
            raise DataError(f"{dpath}/{split} is empty; generate more pairs (or a larger validation fraction)")
    _check_rows(task, splits, set(ids), dpath)
    fp = hashlib.sha256(json.dumps([manifest.get("corpus_fingerprint"), task,
                                    [getattr(dd[s], "_fingerprint", "") for s in sorted(splits)]]).encode())
    return Pairs(path, task, manifest, ids, texts, splits, fp.hexdigest()[:16], layout_of(manifest))


def _items_as_pairs(path: Path, manifest: dict) -> Pairs:
    """An items folder as ``Pairs``: ``load_items``' rows as columns; train and validation must be non-empty
    (what else training needs of the labels is ``projector.train.labelfit.check_items``)."""
    rows = load_items(path)
    for split in ("train", "validation"):
        if not rows.get(split):
            raise DataError(f"{path / DATASET}/{split} is missing or empty; generate with a validation fraction > 0 "
                            "and enough items (--max-items) for both splits")
    splits = {s: {c: [r[c] for r in part] for c in REQUIRED[ITEMS]} for s, part in rows.items()}
    fp = hashlib.sha256(json.dumps([manifest.get("corpus_fingerprint"), ITEMS, splits], sort_keys=True).encode())
    return Pairs(path, manifest["task"], manifest, [], [], splits, fp.hexdigest()[:16], ITEMS)


def _check_rows(task: str, splits: dict, ids: set, dpath: Path) -> None:
    """qa: every passage_id is in passages.jsonl; pairs: labels are 0/1, both classes in train and validation."""
    for split, cols in splits.items():
        if task == "qa":
            for column in ("passage_id", "negatives"):
                values = cols.get(column, [])
                found = {str(p) for v in values for p in v} if column == "negatives" else {str(p) for p in values}
                unknown = sorted(found - ids)
                if unknown:
                    raise DataError(f"{dpath}/{split}: {column} {unknown[:3]} not in passages.jsonl; "
                                    "the dataset and passages.jsonl must come from the same run")
        else:
            labels = set(cols["label"])
            if not labels <= {0, 1}:
                raise DataError(f"{dpath}/{split}: column 'label' must hold 0/1, found {sorted(labels)[:5]}")
            if split in ("train", "validation") and len(labels) < 2:  # validation: NDCG and calibration need both
                raise DataError(f"{dpath}/{split}: column 'label' has a single class {labels}; the model needs both "
                                "similar (1) and dissimilar (0) pairs: widen the candidate pairs in generate")


def has_test_rows(pairs: Pairs) -> bool:
    """Whether the folder has a non-empty test split."""
    return "test" in pairs.splits and bool(pairs.splits["test"][REQUIRED[pairs.layout][0]])


def load_items(path) -> dict[str, list[dict]]:
    """The labelled items of a folder of layout items: split -> rows {id, text, label} (``UNKNOWN`` kept).

    Every split present is returned (an empty one as []); ids must be unique across splits."""
    path = Path(path)
    manifest = read_manifest(path)
    if layout_of(manifest) != ITEMS:
        raise DataError(f"{path / MANIFEST}: layout {layout_of(manifest)!r}, not {ITEMS!r} "
                        "(made without --judge attribute?)")
    dd = _open_dataset(path)
    dpath = path / DATASET
    out, seen = {}, set()
    for split in dd:
        missing = [c for c in REQUIRED[ITEMS] if c not in dd[split].column_names]
        if missing:
            raise DataError(f"{dpath}/{split}: missing column(s) {missing} for layout {ITEMS!r} "
                            f"(has {dd[split].column_names})")
        rows = [{c: r[c] for c in REQUIRED[ITEMS]} for r in dd[split]]
        for i, r in enumerate(rows):
            if not isinstance(r["label"], str) or not r["label"]:
                raise DataError(f"{dpath}/{split} row {i}: field 'label' must be a label name, got {r['label']!r}")
            if r["id"] in seen:
                raise DataError(f"{dpath}/{split} row {i}: id {r['id']!r} appears twice; re-run projector.generate")
            seen.add(r["id"])
        out[split] = rows
    return out
