"""The learning curve (issue 11, piece 6): LLM-made vs real training queries at equal counts, on the same passages.

    python benchmarks/learning_curve.py corpus nq-wiki runs/learning-curve/nq-wiki-train.jsonl
    python benchmarks/learning_curve.py examples nq-wiki runs/learning-curve/nq-wiki-examples.txt --n 6
    python -m projector.generate --corpus runs/learning-curve/nq-wiki-train.jsonl --id-field _id \
        --chunk-tokens 4096 --chunk-overlap 0 --max-passages 1500 --out runs/llm-nq-wiki
    python benchmarks/learning_curve.py run nq-wiki debdesc --llm-pairs nq-wiki=runs/llm-nq-wiki
    python benchmarks/learning_curve.py run nq-wiki --llm-pairs nq-wiki:v1=DIR1 nq-wiki:v2=DIR2   # ablation groups
    python benchmarks/compare.py --learning-curve nq-wiki --quick     # the same `run`, through compare.py

The rows stand on a fixed split of a real-query set (``split_set``, ``learning_curve_split.py``): the passages
that have real queries (qrels) fall into a train half and a test half by a seeded hash of their id
(``SPLIT_RULE``), so the split never moves; every real query belongs to the half of its passage. Nothing
trains or validates on a test-half query; every row is scored on the test-half queries against the whole corpus.

``corpus SET OUT.jsonl`` writes the train-half passages (BEIR corpus rows ``_id``, ``title``, ``text``) as the
corpus ``projector generate`` makes LLM questions from; ``examples SET OUT.txt --n 6`` writes a seeded handful
of real train-half queries, one a line (style examples for generate's ``--query-examples``); ``OUT.jsonl``
writes the same queries with the passage each finds (``{"query", "passage"}``: few-shot pairs, prompt qa-shots).

``run SETS``: rows at ``--counts`` (COUNTS) for each recipe of RECIPES, all through ``projector.train`` on
pairs folders written with ``projector.formats.pairs``' writers under ``--work`` (``learning_curve_folders.py``;
kept: a rerun trains only what changed, keyed on the folder's content and the options):
  real     N real queries of train-half passages (one seeded order: the first VAL_QUERIES validate, row N
           trains on the next N), the reference;
  llm      the first N train pairs of a ``projector generate`` folder made from the ``corpus`` file (its own
           synthetic validation split); ``--llm-pairs SET:LABEL=DIR`` adds row group ``llm:LABEL``;
  cosine   frozen cosine.
A count a source cannot fill is a missing row, said so, never faked. Scoring: ``projector.evaluate``'s
RetrievalEvaluator (NDCG@10; paired bootstrap CI of Δ vs cosine, ``projector.metrics.bootstrap_ci``) on the
shared embedding cache (``projector.embed``'s, as train and compare.py use it); a model's per-query scores are
kept beside it, so a rerun ranks only new rows (nq-wiki: ~1 min a row on a busy 2-core machine).
Outputs: ``--out/learning-curve.json`` (per set and count ``cosine_ndcg10``, ``real_ndcg10``, ``llm_ndcg10``,
per recipe too; the rows, split, commands, targets; sets not rerun are kept) and ``learning-curve.md``
(the targets and the tables: ``benchmarks/learning_curve_report.py``).

SET is a known benchmark name (``benchmarks/build.py``'s ``benchmark_dir``: nq-wiki, debdesc, ...) or a
folder in BEIR layout (corpus.jsonl, queries.jsonl, qrels/test.tsv).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from siblings import load  # noqa: E402  (benchmarks/ is not a package)

from projector.evaluate import baselines as B  # noqa: E402
from projector import cli  # noqa: E402
from projector.evaluate.data import RetrievalData  # noqa: E402
from projector.evaluate.evaluators import RetrievalEvaluator  # noqa: E402
from projector.evaluate.rows import Embedder  # noqa: E402
from projector.errors import DataError  # noqa: E402
from projector.files import write_bytes, write_json, write_text  # noqa: E402

load("learning_curve_split")  # the fixed split and the files cut from it, as benchmarks_learning_curve_split
load("learning_curve_folders")  # a pairs folder per row, as benchmarks_learning_curve_folders
load("results")  # folders and times as results record them, as benchmarks_results
from benchmarks_learning_curve_split import (SPLIT_RULE, SPLIT_SEED, load_set, set_key, test_half,  # noqa: E402
                                             write_corpus, write_examples)
from benchmarks_learning_curve_folders import plan_rows, real_order  # noqa: E402
from benchmarks_results import recorded, utc_now  # noqa: E402

# ---------------------------------------------------------------------------------------------- the rows

COUNTS = (250, 500, 1000, 2000, 4000)  # training pairs per row (a count above what a source has: row missing)
QUICK_COUNTS = (250, 500)              # --quick: these, with the first recipe only
VAL_QUERIES = 500                      # real rows: real train-half queries that validate them (never trained on)

# The recipes: train() options over the defaults. "issue": piece 5's best few-pairs map on real queries
# (benchmarks/results/adapters-faq-perl-debian.md: lowrank r=32 at lr 1e-3, +0.007 NDCG@10); "lr1e-3": that
# table's best row overall (full W at lr 1e-3, +0.010), the control that shows how much is the learning rate.
RECIPES = {
    "issue": {"adapter": "lowrank", "adapter_rank": 32, "lr": 1e-3},
    "today": {},   # the shipped recipe: full W, AdamW lr 1e-4, early stopping, candidate selection on validation
    "lr1e-3": {"lr": 1e-3},
}
DEFAULT_RECIPES = ("issue", "today")   # the first is the primary one: the JSON's top-level figures per count
COMMON = {"sentence_transformers": False}   # every row: no copy of the encoder (~90 MB) per model


@dataclass
class CurveConfig:
    sets: list[str] = field(default_factory=lambda: ["nq-wiki", "debdesc"])  # known names or BEIR folders
    llm_pairs: list[str] = field(default_factory=list)  # SET=DIR or SET:LABEL=DIR, each folder one row group
    counts: list[int] = field(default_factory=lambda: list(COUNTS))
    recipes: list[str] = field(default_factory=lambda: list(DEFAULT_RECIPES))  # keys of RECIPES
    real: bool = True              # the real-query reference rows (False: LLM rows and cosine only)
    val_queries: int = VAL_QUERIES
    out: str = str(REPO / "benchmarks" / "results")    # learning-curve.md + learning-curve.json
    work: str = str(REPO / "runs" / "learning-curve")  # training folders and models, kept: a rerun reuses them
    threads: int = 1               # torch threads per training run (1 is fastest on a busy machine)
    bootstrap: int = 1000          # paired bootstrap resamples of Δ vs cosine
    seed: int = 0                  # the real rows' samples, train()'s seed, the bootstrap
    train_extra: dict = field(default_factory=dict)  # more train() options for every row (tests: fewer epochs)
    llm_train_half_only: bool = False  # an LLM folder made from the whole corpus: keep its train-half part only
    llm_real_validation: bool = False  # also every LLM folder validated on the real rows' queries ("LABEL+realval")
    llm_plus_real: bool = False    # also each real row with every LLM folder's train pairs added ("real+LABEL")

# ---------------------------------------------------------------------------------------------- siblings


def report_module():
    """learning_curve_report.py, the sibling that writes the tables (loaded by path: benchmarks/ is no package)."""
    return load("learning_curve_report")


# ---------------------------------------------------------------------------------------------- one row


def training_code() -> str:
    """Content key of the modules that decide what a row trains and exports: a finished model is reused only
    while they are unchanged (an edited early stopping or selection rule retrains every row)."""
    import projector

    root = Path(projector.__file__).parent
    h = hashlib.sha256()
    for path in [*sorted((root / "train").glob("*.py")), root / "formats" / "pairs.py"]:   # the train stage, whole
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def train_row(pairs_dir: Path, model_dir: Path, key: str, recipe: str, cfg: "CurveConfig") -> dict:
    """projector.train on a folder with a recipe; a finished model of the same content and options is reused."""
    from projector.train.stage import train

    options = {**COMMON, **RECIPES[recipe], **cfg.train_extra, "threads": cfg.threads, "seed": cfg.seed}
    spec = {"pairs": key, "options": options, "row_format": 2, "code": training_code()}
    record = model_dir / "learning_curve.json"
    if (model_dir / "projector.json").is_file() and record.is_file():
        done = json.loads(record.read_text(encoding="utf-8"))
        if done.get("spec") == spec:
            return {**done["row"], "reused": True}
    started = time.time()
    s = train(pairs=str(pairs_dir), out=str(model_dir), **options)
    val = s["validation"]
    row = {"model": str(model_dir), "selected": s["selected"], "epochs": s["epochs_run"],
           "train_pairs": s["train_pairs"], "val_ndcg10_selected": round(val[s["selected"]]["val_ndcg@10"], 4),
           "val_ndcg10_trained": round(val["trained"]["val_ndcg@10"], 4),
           "val_ndcg10_cosine": round(val["cosine"]["val_ndcg@10"], 4), "train_s": round(time.time() - started, 1)}
    write_json(record, {"spec": spec, "row": row})
    return row


# ---------------------------------------------------------------------------------------------- one set


def llm_specs(cfg: CurveConfig) -> dict[str, list[tuple[str, Path]]]:
    """--llm-pairs SET[:LABEL]=DIR -> {set: [(row label, folder)]}; the label is "llm" or "llm:LABEL"."""
    out: dict[str, list[tuple[str, Path]]] = {}
    keys = {set_key(n) for n in cfg.sets}
    for spec in cfg.llm_pairs:
        head, sep, folder = spec.partition("=")
        name, _, tag = head.partition(":")
        if not sep or not name or not folder:
            raise DataError(f"--llm-pairs {spec!r}: expected SET=DIR or SET:LABEL=DIR")
        if name not in keys:
            raise DataError(f"--llm-pairs {spec!r}: set {name!r} is not run (sets: {sorted(keys)})")
        label = f"llm:{tag}" if tag else "llm"
        if label in [x for x, _ in out.get(name, [])]:
            raise DataError(f"--llm-pairs {spec!r}: label {label!r} given twice for {name}; name each folder")
        out.setdefault(name, []).append((label, Path(folder)))
    return out


def run_set(name: str, cfg: CurveConfig, llm: list[tuple[str, Path]]) -> dict:
    """Every row of one set: train, then score each against frozen cosine on the test half."""
    started = time.time()
    key = set_key(name)
    _, data, split = load_set(name)
    test = test_half(data, split)
    print(f"[{key}] split: {split.summary()['passages']} passages, {split.summary()['queries']} queries", flush=True)
    plans, folders = plan_rows(key, data, split, cfg, llm)
    rows = []
    for label, source, n, folder, content, missing in plans:
        for recipe in cfg.recipes:
            row = {"name": f"{label} {recipe} n={n}", "label": label, "source": source, "recipe": recipe, "count": n}
            if missing:
                row["missing"] = missing
            else:
                model = Path(cfg.work) / key / "models" / f"{label.replace(':', '-')}-{recipe}-{n}"
                row |= train_row(folder, model, content, recipe, cfg)
                print(f"[{key}] {row['name']}: exported {row['selected']}, val NDCG@10 {row['val_ndcg10_selected']} "
                      f"(trained {row['val_ndcg10_trained']}, cosine {row['val_ndcg10_cosine']}), {row['train_s']}s"
                      f"{' (reused)' if row.get('reused') else ''}", flush=True)
            rows.append(row)
    by, cos = score_rows(test, [r for r in rows if "model" in r], cfg)
    for r in rows:
        if r["name"] in by:
            x = by[r["name"]]
            r |= {"ndcg10": round(x["ndcg@10"], 4), "delta": round(x["ndcg@10"] - cos, 4), "delta_ci95": x["ci95"],
                  "gain_pct": round(100 * (x["ndcg@10"] / cos - 1), 2), "mrr10": round(x["mrr@10"], 4),
                  "recall10": round(x["recall@10"], 4), "model": recorded(r["model"])}
    real_val, real_pool = real_order(split, cfg.val_queries, cfg.seed)
    return {"set": key, "when": utc_now(),
            "data": {"test_queries": len(test.queries), "corpus": len(data.corpus),
                     "train_half_passages": len(split.train_passages)},
            "split": split.summary(),
            "validation": {"real": f"{len(real_val)} real train-half queries (the first of the seeded order; the "
                                   f"next {len(real_pool)} are the training pool, row N trains on the first N)",
                           "llm": "the LLM folder's own synthetic validation split"},
            "recipes": {r: {**COMMON, **RECIPES[r], **cfg.train_extra} for r in cfg.recipes}, "counts": cfg.counts,
            "llm_folders": folders, "cosine_ndcg10": round(cos, 4), "rows": rows,
            "curve": curve(rows, cfg.counts, cfg.recipes, round(cos, 4), list(folders)),
            "command": command(key, cfg, llm), "wall_s": round(time.time() - started, 1)}


def score_rows(test: RetrievalData, rows: list[dict], cfg: CurveConfig) -> tuple[dict, float]:
    """Each model's mean NDCG@10, MRR@10, Recall@10 on the test half and the paired bootstrap 95% CI of its
    NDCG@10 difference to frozen cosine ({name: {...}}, cosine's NDCG@10): ``projector.evaluate``'s
    RetrievalEvaluator and ``projector.metrics.bootstrap_ci``, as evaluate_retrieval computes them."""
    import projector
    from projector.embed.encoder import encoder_identity
    from projector.metrics import bootstrap_ci

    emb = Embedder(None, 64)
    ev = RetrievalEvaluator(emb(test.queries, None), emb(test.corpus, None), test.qrels)
    key = hashlib.sha256(json.dumps([encoder_identity(None), test.queries, test.corpus_ids,
                                     [sorted(r) for r in test.qrels]]).encode()).hexdigest()[:16]
    base = ev.per_query(B.Cosine().fit(ev.corpus_emb))
    out = {}
    for r in rows:
        pq = per_query_cached(ev, projector.load(r["model"]), Path(r["model"]), key)
        diff = pq["ndcg@10"] - base["ndcg@10"]
        out[r["name"]] = {**{m: float(pq[m].mean()) for m in ("ndcg@10", "mrr@10", "recall@10")},
                          "ci95": [round(v, 4) for v in bootstrap_ci(diff, cfg.bootstrap, cfg.seed)]}
    return out, float(base["ndcg@10"].mean())


def per_query_cached(ev: RetrievalEvaluator, scorer, model_dir: Path, test_key: str) -> dict[str, np.ndarray]:
    """``ev.per_query(scorer)``, kept beside the model (MODEL/test-half.npz), keyed on its weights and the test
    set: ranking ~9k queries over 14k passages takes a minute a row on a busy CPU, and reruns add rows."""
    key = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()[:16] + test_key
    path, meta = model_dir / "test-half.npz", model_dir / "test-half.json"
    if path.is_file() and meta.is_file() and json.loads(meta.read_text(encoding="utf-8")).get("key") == key:
        with np.load(path, allow_pickle=False) as z:
            return {m: z[m] for m in z.files}
    pq = ev.per_query(scorer)
    buf = io.BytesIO()
    np.savez(buf, **pq)
    write_bytes(path, buf.getvalue())
    write_json(meta, {"key": key})
    return pq


def curve(rows: list[dict], counts, recipes, cos: float, labels: list[str]) -> dict:
    """Per count: cosine_ndcg10, real_ndcg10 and llm_ndcg10 (the primary recipe; None = missing), per recipe too
    (with ``real_plus_llm_ndcg10_by_label``: the real+LABEL rows, where there are)."""
    primary_llm = "llm" if "llm" in labels else (labels[0] if labels else None)
    mixed = sorted({r["label"] for r in rows if r["source"] == "real+llm"})
    get = lambda label, recipe, n: next((r.get("ndcg10") for r in rows
                                         if (r["label"], r["recipe"], r["count"]) == (label, recipe, n)), None)
    out = {}
    for n in counts:
        per = {rc: {"real_ndcg10": get("real", rc, n), "llm_ndcg10": get(primary_llm, rc, n),
                    "llm_ndcg10_by_label": {lb: get(lb, rc, n) for lb in labels},
                    **({"real_plus_llm_ndcg10_by_label": {lb: get(lb, rc, n) for lb in mixed}} if mixed else {})}
               for rc in recipes}
        out[str(n)] = {"cosine_ndcg10": cos, "real_ndcg10": per[recipes[0]]["real_ndcg10"],
                       "llm_ndcg10": per[recipes[0]]["llm_ndcg10"], "primary_recipe": recipes[0],
                       "llm_label": primary_llm, "recipes": per}
    return out


def command(key: str, cfg: CurveConfig, llm: list[tuple[str, Path]]) -> dict:
    """The commands that make this set's rows (folders relative to the repository)."""
    run = ["python benchmarks/learning_curve.py run", key, "--counts", ",".join(map(str, cfg.counts)),
           "--recipes", ",".join(cfg.recipes), "--val-queries", str(cfg.val_queries), "--seed", str(cfg.seed)]
    run += ["--llm-pairs"] + [f"{key}{label[3:]}={recorded(src)}" for label, src in llm] if llm else []
    run += [] if cfg.real else ["--no-real"]
    run += ["--llm-train-half-only"] if llm and cfg.llm_train_half_only else []
    run += ["--llm-real-validation"] if llm and cfg.llm_real_validation else []
    run += ["--llm-plus-real"] if llm and cfg.real and cfg.llm_plus_real else []
    return {"run": " ".join(run),
            "llm corpus": f"python benchmarks/learning_curve.py corpus {key} runs/learning-curve/{key}-train.jsonl",
            "style examples": f"python benchmarks/learning_curve.py examples {key} "
                              f"runs/learning-curve/{key}-examples.txt --n 6",
            "generate (the LLM folder's manifest records what was run)":
                f"python -m projector.generate --corpus runs/learning-curve/{key}-train.jsonl --id-field _id "
                f"--chunk-tokens 4096 --chunk-overlap 0 --max-passages M --out DIR"}


# ---------------------------------------------------------------------------------------------- output


def write(sets: dict, out: Path) -> dict:
    """Merge into OUT/learning-curve.json (sets not rerun are kept as they were), rewrite the .md."""
    path = out / "learning-curve.json"
    old = json.loads(path.read_text(encoding="utf-8"))["sets"] if path.is_file() else {}
    merged = {**old, **sets}
    report = report_module()
    res = {"issue": 11, "piece": 6, "split_rule": SPLIT_RULE.replace("SEED", str(SPLIT_SEED)),
           "split_seed": SPLIT_SEED, "sets": merged, "targets": report.targets(merged)}
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, res)
    write_text(out / "learning-curve.md", report.markdown(res))
    return res


def run(cfg: CurveConfig) -> dict:
    bad = [r for r in cfg.recipes if r not in RECIPES]
    if bad or not cfg.recipes:
        raise DataError(f"--recipes: unknown {bad}; choose from {list(RECIPES)}")
    if not cfg.counts or min(cfg.counts) < 1:
        raise DataError(f"--counts must be positive pair counts, got {cfg.counts}")
    llm = llm_specs(cfg)
    res = None
    for name in cfg.sets:
        res = write({set_key(name): run_set(name, cfg, llm.get(set_key(name), []))}, Path(cfg.out))
    print(report_module().markdown(res), flush=True)
    return res


# ---------------------------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/learning_curve.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("corpus", help="the train-half passages as a corpus file for projector generate")
    c.add_argument("set")
    c.add_argument("out", type=Path)
    x = sub.add_parser("examples", help="a seeded handful of real train-half queries, one a line")
    x.add_argument("set")
    x.add_argument("out", type=Path)
    x.add_argument("--n", type=int, default=6)
    d = CurveConfig()
    r = sub.add_parser("run", help="train and score every row; write OUT/learning-curve.{md,json}")
    r.add_argument("sets", nargs="*", default=d.sets)
    r.add_argument("--llm-pairs", nargs="+", action="extend", default=[], metavar="SET[:LABEL]=DIR",
                   help="a projector generate folder made from the train-half corpus; several: one row group each")
    r.add_argument("--counts", default=",".join(map(str, d.counts)), help="training pairs per row, comma-separated")
    r.add_argument("--recipes", default=",".join(d.recipes), help=f"comma-separated, of {list(RECIPES)}")
    r.add_argument("--quick", action="store_true", help=f"counts {QUICK_COUNTS}, the first recipe only")
    r.add_argument("--no-real", action="store_true", help="skip the real-query reference rows")
    r.add_argument("--llm-train-half-only", action="store_true",
                   help="an --llm-pairs folder made from the whole corpus (today's committed pairs): use only its "
                        "train-half passages and their questions, instead of refusing it")
    r.add_argument("--llm-plus-real", action="store_true",
                   help="also each real row with every train pair of each LLM folder added (row group real+LABEL), "
                        "validated like the real rows: what LLM questions add to a user's own few queries")
    r.add_argument("--llm-real-validation", action="store_true",
                   help="also run every LLM folder validated on the real rows' validation queries instead of its "
                        "own synthetic split (row group LABEL+realval): the training signal without the noise of "
                        "a few dozen synthetic validation queries")
    for name in ("val_queries", "threads", "bootstrap", "seed"):
        r.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    r.add_argument("--out", default=d.out)
    r.add_argument("--work", default=d.work)

    def go(argv):
        a = p.parse_args(argv)
        if a.command in ("corpus", "examples"):
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)  # the README's runs/learning-curve/ on a fresh clone
        if a.command == "corpus":
            s = write_corpus(a.set, a.out)
            print(f"{a.out}: {s['written']} train-half passages of {a.set} (test half: {s['passages']['test']} "
                  f"passages, {s['queries']['test']} real queries, never trained on)")
        elif a.command == "examples":
            for q in write_examples(a.set, a.out, a.n):
                print(q)
            print(f"{a.out}: {a.n} real train-half queries of {a.set}")
        else:
            try:
                counts = [int(n) for n in a.counts.split(",")]
            except ValueError:
                raise DataError(f"--counts {a.counts!r}: expected comma-separated integers") from None
            recipes = [x.strip() for x in a.recipes.split(",") if x.strip()]
            if a.quick:
                counts, recipes = list(QUICK_COUNTS), recipes[:1]
            run(CurveConfig(sets=a.sets, llm_pairs=a.llm_pairs, counts=counts, recipes=recipes, real=not a.no_real,
                            val_queries=a.val_queries, out=a.out, work=a.work, threads=a.threads,
                            bootstrap=a.bootstrap, seed=a.seed, llm_train_half_only=a.llm_train_half_only,
                            llm_real_validation=a.llm_real_validation, llm_plus_real=a.llm_plus_real))

    return cli.run(go, "learning-curve", argv)


if __name__ == "__main__":
    raise SystemExit(main())
