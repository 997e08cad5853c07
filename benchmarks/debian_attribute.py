"""debian-pkgs, attribute mode: LLM item labels for a criterion, scored against the human labels.

    python benchmarks/debian_attribute.py corpus [OUT.jsonl]             # train items only: id, text (no labels)
    python benchmarks/debian_attribute.py label CRITERION [RUN_DIR]      # prints the generate command line
    python benchmarks/debian_attribute.py score CRITERION [RUN_DIR] [--json F]  # while or after the run

The benchmark (items.jsonl with human labels, meta.json with the criterion sentences) is read from --data,
by default ../shared/benchmarks/debian-pkgs beside the repo (benchmarks/build.py's SHARED_DIR) when it is
there, else benchmarks/data/debian-pkgs. The train corpus goes to benchmarks/data/debian-pkgs-train.jsonl
(gitignored), and RUN_DIR defaults to the committed labels, benchmarks/pairs/debian-pkgs-CRITERION
(records.jsonl, manifest.json, dataset/), so ``score`` reruns without the LLM; ``label`` resumes them.

``score`` reads the run's records.jsonl (so it works on a run still in progress) and reports:
  - LLM label quality on the labelled items: item accuracy (LLM label name -> Debian value by the mapping
    below, read off the criterion sentence of meta.json), unknown rate, and agreement on the implied pairs
    (same LLM label == same human label; mapping-free);
  - test mAP (benchmark protocol: test items, each a query over the other test items, relevant = same
    human label, classes with >= 10 test items) of every candidate ``projector.train`` fits on the LLM labels
    (cosine, shrinkage LDA, the symmetric W trained with the in-batch sigmoid pair loss, at full rank and at
    rank 64) with its validation label mAP, the one train chooses (the exported model, loaded with
    ``projector.load``), LDA on all LLM-labelled items (centred and not, outside train), and human-label
    references: LDA on the same labelled items, and LDA on every train item (the human-label ceiling of
    benchmarks/README.md and docs/criterion.md; centred and not).
The human labels are used only to score; nothing here feeds them to the LLM or to a fit on LLM labels.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from siblings import load  # noqa: E402  (benchmarks/ is not a package)

from projector.formats.corpus import read_jsonl  # noqa: E402
from projector.errors import DataError, ProjectorError  # noqa: E402
from projector.files import write_text  # noqa: E402


def _build():
    return load("build")


NAME = "debian-pkgs"
TRAIN_CORPUS = Path("benchmarks") / "data" / f"{NAME}-train.jsonl"  # relative to the repo, as manifests name it
PAIRS_ROOT = Path("benchmarks") / "pairs"


def default_data() -> Path:
    """The benchmark folder: the shared copy beside the repo when there, else benchmarks/data/debian-pkgs."""
    build = _build()
    for d in (Path(build.SHARED_DIR) / NAME, Path(build.DATA_DIR) / NAME):
        if (d / "items.jsonl").is_file():
            return d
    return Path(build.DATA_DIR) / NAME


def run_dir_of(criterion: str) -> Path:
    return PAIRS_ROOT / f"{NAME}-{criterion}"

# Label sets read off the criterion sentences of meta.json (not from the labels), with the Debian value each
# name stands for (used only to score item accuracy). One table: data/make_debian_programs.py owns it and
# writes it beside the bundled demo data (the sentence's own wording: short names like "web", "text-mode"
# misled the 1.5B model on the first 13 items: a game labelled "web", a GNOME dictionary "text-mode").
LABELS = {c: v["labels"] for c, v in
          json.loads((REPO / "data" / "debian-programs.criteria.json").read_text(encoding="utf-8")).items()}
MAX_ITEMS = 600


def read_items(data: Path) -> list[dict]:
    if not (Path(data) / "items.jsonl").is_file():
        raise DataError(f"{data}/items.jsonl not found: pass --data, the debian-pkgs benchmark folder "
                        "(items.jsonl, meta.json)")
    return [row for _, row in read_jsonl(Path(data) / "items.jsonl", error=DataError)]


def cmd_corpus(args):
    rows = [r for r in read_items(args.data) if r["split"] == "train"]  # never the test items, never a label
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, "".join(json.dumps({"id": r["id"], "text": r["text"]}, ensure_ascii=False) + "\n"
                                 for r in rows))
    print(f"{len(rows)} train items -> {args.out}")


def generate_argv(criterion: str, run_dir: str, corpus: str, given_labels: bool, data: Path) -> list[str]:
    mpath = Path(data) / "meta.json"
    if not mpath.is_file():
        raise DataError(f"{mpath} not found: pass --data, the debian-pkgs benchmark folder (items.jsonl, meta.json)")
    meta = json.loads(mpath.read_text(encoding="utf-8"))
    argv = ["--corpus", corpus, "--id-field", "id", "--out", run_dir, "--task", "pairs", "--judge", "attribute",
            "--criterion", meta["criteria"][criterion], "--max-items", str(MAX_ITEMS),
            "--chunk-tokens", "512", "--temperature", "0", "--max-tokens", "60", "--concurrency", "2"]
    if given_labels:
        argv += ["--labels", ",".join(LABELS[criterion])]
    return argv


def cmd_label(args):
    """Print the generate command line (its relative paths are the repo's: run it from the repo root)."""
    import shlex

    argv = generate_argv(args.criterion, str(args.run_dir or run_dir_of(args.criterion)), args.corpus,
                         not args.propose, args.data)
    print(" ".join(shlex.quote(a) for a in [sys.executable, "-m", "projector.generate", *argv]))


def llm_labels(run_dir: Path) -> tuple[dict, dict]:
    """id -> LLM label from records.jsonl (items done so far), and the label-set record if proposed."""
    from projector.llm.records import RecordLog

    done = RecordLog(run_dir / "records.jsonl").load()
    out = {}
    for key, rec in done.items():
        if key.startswith("attr:") and rec["status"] == "ok":
            out[rec["passage_id"].rsplit("#", 1)[0]] = rec["result"]["label"]
    times = sorted(r["time"] for k, r in done.items() if k.startswith("attr:"))
    info = {"records": len(done), "failed": sum(r["status"] != "ok" for r in done.values()),
            "labelset": done.get("labelset", {}).get("result"),
            "s_per_call": round((times[-1] - times[0]) / (len(times) - 1), 2) if len(times) > 1 else None}
    return out, info


def label_quality(llm: dict, human: dict, mapping: dict) -> dict:
    ids = sorted(llm)
    unknown = sum(llm[i] == "unknown" for i in ids)
    acc = sum(mapping.get(llm[i]) == human[i] for i in ids) / max(len(ids), 1)
    covered = [i for i in ids if human[i] in set(mapping.values())]
    acc_cov = sum(mapping.get(llm[i]) == human[i] for i in covered) / max(len(covered), 1)
    known = [i for i in ids if llm[i] != "unknown"]
    agree = same_h = same_l = both = 0
    pairs = 0
    for a, b in combinations(known, 2):
        sl, sh = llm[a] == llm[b], human[a] == human[b]
        agree += sl == sh
        same_h += sh
        same_l += sl
        both += sl and sh
        pairs += 1
    confusion = Counter((human[i], llm[i]) for i in ids)
    return {"items": len(ids), "unknown": unknown, "item_accuracy": round(acc, 3),
            "item_accuracy_on_covered_values": round(acc_cov, 3), "covered_items": len(covered),
            "pairs": pairs, "pair_agreement": round(agree / max(pairs, 1), 3),
            "human_same_share": round(same_h / max(pairs, 1), 3),
            "always_different_agreement": round(1 - same_h / max(pairs, 1), 3),
            "same_pair_precision": round(both / max(same_l, 1), 3), "same_pair_recall": round(both / max(same_h, 1), 3),
            "llm_label_counts": dict(Counter(llm[i] for i in ids).most_common()),
            "top_confusions": [f"{h} -> {l}: {n}" for (h, l), n in confusion.most_common(12)]}


def write_items_folder(root: Path, labelled: list[dict], test: list[dict]) -> Path:
    """An items folder (projector.formats.pairs' writer) for ``projector.train``: ``labelled`` rows {id, text, label,
    split} (LLM labels, train/validation) and ``test`` rows {id, text, label} (human labels: only scored)."""
    from projector.formats import pairs as P
    from projector.formats.corpus import Passage

    rows = [P.item_row(Passage(r["id"], r["id"], r["text"]), r["label"], r["split"]) for r in labelled]
    rows += [P.item_row(Passage(r["id"], r["id"], r["text"]), r["label"], "test") for r in test]
    root.mkdir(parents=True, exist_ok=True)
    P.write_dataset(rows, root, P.ITEMS)
    write_text(root / P.MANIFEST, json.dumps({"format": P.FORMAT, "format_version": P.FORMAT_VERSION, "task": "pairs",
                                              "layout": P.ITEMS, "corpus_fingerprint": f"{NAME}-benchmark"}))
    return root


def cmd_score(args):
    import tempfile

    import projector
    from projector.embed.embedding import embed
    from projector.train.labelfit import lda
    from projector.metrics import label_map
    from projector.train.stage import train

    crit = args.criterion
    run_dir = Path(args.run_dir) if args.run_dir else REPO / run_dir_of(crit)
    items = [r for r in read_items(args.data) if crit in r["labels"]]
    human = {r["id"]: r["labels"][crit] for r in items}
    llm, info = llm_labels(run_dir)
    llm = {i: v for i, v in llm.items() if i in human}
    quality = label_quality(llm, human, LABELS[crit])
    train_items = [r for r in items if r["split"] == "train"]
    test = [r for r in items if r["split"] == "test"]
    t0 = time.time()
    e_train = embed([r["text"] for r in train_items])
    e_test = embed([r["text"] for r in test])
    y_test = np.array([r["labels"][crit] for r in test], dtype=object)
    pos = {r["id"]: i for i, r in enumerate(train_items)}
    lab_ids = [i for i in sorted(llm)]
    x_lab = e_train[[pos[i] for i in lab_ids]]
    y_llm = np.array([llm[i] for i in lab_ids], dtype=object)
    y_hum_lab = np.array([human[i] for i in lab_ids], dtype=object)
    y_hum_all = np.array([r["labels"][crit] for r in train_items], dtype=object)

    def score(z):
        r = label_map(z, y_test)
        return {"map": round(r["map"], 4), "p_at_10": round(r["p_at_10"], 4)}

    rows = {}
    chance = round(label_map(e_test, y_test)["chance_map"], 4)
    # The product's own path: projector.train on an items folder of the LLM-labelled items (a seeded 85% train,
    # 15% validation), whose test split is the benchmark's test items with their human labels, only scored, in
    # classes of >= 10 test items (the protocol; train's label mAP on them is then the protocol's).
    rng = np.random.default_rng(0)
    is_val = rng.random(len(lab_ids)) < 0.15
    text = {r["id"]: r["text"] for r in train_items}
    labelled = [{"id": i, "text": text[i], "label": llm[i], "split": "validation" if v else "train"}
                for i, v in zip(lab_ids, is_val)]
    sizes = Counter(y_test)
    scored = [{"id": r["id"], "text": r["text"], "label": r["labels"][crit]} for r in test
              if sizes[r["labels"][crit]] >= 10]
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_items_folder(Path(tmp) / "items", labelled, scored)
        summary = train(pairs=str(folder), out=str(Path(tmp) / "model"), sentence_transformers=False, threads=1,
                        rank=e_train.shape[1] if args.quick else None, lr=args.lr, epochs=args.epochs,
                        patience=args.patience)
        chosen = projector.load(Path(tmp) / "model")
    for name, m in summary["test"].items():
        rows[f"{name} (LLM labels)" if name != "cosine" else "cosine"] = {
            "map": round(m["test_map"], 4), "val_map": round(summary["validation"][name]["val_map"], 4)}
    rows["projector: chosen on validation"] = {"candidate": summary["selected"], "warning": summary["warning"],
                                               **score(chosen.project_queries(e_test))}
    m = lda(x_lab, y_llm)
    rows["lda, all LLM-labelled items"] = {**score(m.transform(e_test)), "shrinkage": round(m.shrinkage, 3)}
    rows["lda uncentred, all LLM-labelled items"] = score(lda(x_lab, y_llm, centre=False).transform(e_test))
    rows["lda (human labels, same items)"] = score(lda(x_lab, y_hum_lab).transform(e_test))
    rows["lda (human labels, all train) = ceiling"] = score(lda(e_train, y_hum_all).transform(e_test))
    rows["lda uncentred (human labels, all train)"] = score(lda(e_train, y_hum_all, centre=False).transform(e_test))
    shown = run_dir.resolve().relative_to(REPO) if run_dir.resolve().is_relative_to(REPO) else run_dir
    result = {"criterion": crit, "run": shown.as_posix(), "llm": info, "label_quality": quality,
              "train_items": {"train": int((~is_val).sum()), "validation": int(is_val.sum())},
              "test_chance_map": chance, "test_map": rows, "seconds": round(time.time() - t0, 1)}
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        write_text(args.json, text + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None,
                   help="the debian-pkgs benchmark folder (items.jsonl, meta.json); default: the shared copy "
                        "beside the repo, else benchmarks/data/debian-pkgs")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("corpus")
    c.add_argument("out", nargs="?", default=str(REPO / TRAIN_CORPUS))
    c.set_defaults(fn=cmd_corpus)
    lab = sub.add_parser("label")
    lab.add_argument("criterion", choices=list(LABELS))
    lab.add_argument("run_dir", nargs="?", help="default: benchmarks/pairs/debian-pkgs-CRITERION")
    lab.add_argument("--corpus", default=str(TRAIN_CORPUS))
    lab.add_argument("--propose", action="store_true", help="let the LLM propose the label set")
    lab.set_defaults(fn=cmd_label)
    s = sub.add_parser("score")
    s.add_argument("criterion", choices=list(LABELS))
    s.add_argument("run_dir", nargs="?", help="default: benchmarks/pairs/debian-pkgs-CRITERION")
    s.add_argument("--json")
    s.add_argument("--lr", type=float, default=None, help="default: projector.train's for items")
    s.add_argument("--epochs", type=int, default=None, help="default: projector.train's for items")
    s.add_argument("--patience", type=int, default=None, help="default: projector.train's for items")
    s.add_argument("--quick", action="store_true", help="train at full rank only (not also rank 64)")
    s.set_defaults(fn=cmd_score)
    args = p.parse_args(argv)
    args.data = args.data or default_data()
    try:
        args.fn(args)
    except ProjectorError as e:  # DataError, and train's settings errors
        print(f"debian_attribute: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
