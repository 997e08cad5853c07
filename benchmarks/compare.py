"""Side by side in one run (issue 4): baselines, projector and the anchors users would pick instead.

    python benchmarks/compare.py faq-perl-debian                    # -> benchmarks/results/faq-perl-debian.{md,json}
    python benchmarks/compare.py faq-perl-debian nq-wiki --anchors none
    python benchmarks/compare.py --scaling                           # projector pairs/s at 10k, 100k, 1M pairs
    python benchmarks/compare.py faq-perl-debian --adapters          # -> benchmarks/results/adapters-NAME.{md,json}
    python benchmarks/compare.py --learning-curve nq-wiki --quick    # benchmarks/learning_curve.py run (issue 11)
    python benchmarks/compare.py debian-pkgs                         # benchmarks/debian_pkgs.py (issue 10)

Inputs per set: the real-query BEIR folder ``benchmark_dir(NAME)`` (corpus.jsonl, queries.jsonl,
qrels/test.tsv: the *test*, never trained on) and the pairs folder ``benchmarks/pairs/NAME`` that
``python -m projector.generate`` wrote from the corpus passages alone (LLM-made questions; only its
train/validation splits are trained or tuned on). A set without a finished pairs folder is skipped, saying so.

Rows, every one through ``projector.evaluate``'s own evaluators on the same encoder's cached embeddings:
  baselines   cosine, raw dot, mean-centred, ZCA / PCA-d/2 whitening, all-but-the-top (fitted on the corpus),
              ridge closed form (fitted on the pairs' train split): ``projector.evaluate.baselines.default_baselines``
  projector   ``projector.train.stage.train`` (the shipped recipe: early stopping, candidate selection) for
              asymmetric and symmetric, k = d and k = --low-rank; plus one run with a fixed number of epochs
              on the anchors' pairs, no early stopping, to time it against the LlamaIndex adapter
  anchors     LlamaIndex ``EmbeddingAdapterFinetuneEngine`` (linear adapter, its own public API, embedding
              the texts itself) and a full sentence-transformers fine-tune of the encoder with
              ``MultipleNegativesRankingLoss`` (``SentenceTransformerTrainer``); install with
              ``pip install -e ".[bench]"`` (torch pinned first). A missing anchor becomes a row saying why.

Costs: every trained method runs in its own child process (``--child``) and reports its wall time and peak
memory as that process's peak RSS (``VmHWM``; so Python + torch imports are included:
the ``import floor`` row gives that floor); baselines run in this process and report ``tracemalloc``'s peak
(numpy allocations) of their fit. projector's embeddings come from the on-disk cache (the encoder runs once
per text for all projector rows and baselines); the cold cost of that one encoder pass is measured
separately (``embed once``) and added where a comparison must be like for like. The anchors embed by
themselves, inside their wall time.

``--adapters`` (issue 11, piece 5): instead of the projector/anchor rows above, today's recipe beside the
few-pairs maps of ``projector.train`` (``ADAPTER_ROWS``: query-only, residual with ``--stay-close`` λ,
low-rank ΔW), each through the same train() with its candidate selection; written as ``adapters-NAME``.

Outputs: the markdown table on stdout and in ``--out/NAME.md``, everything in ``--out/NAME.json``.

Beside this file: ``compare_children.py`` (the child processes that time each method), ``compare_report.py``
(targets, markdown, the files), ``compare_scaling.py`` (``--scaling``), ``results.py`` (what every result
records the same way). The registry (``experiments.py``) names this file's modes as the experiments ``compare``,
``adapters`` and ``scaling``: ``python benchmarks/run.py NAME`` runs any benchmark.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from siblings import load  # noqa: E402  (benchmarks/ is not a package)

from projector.evaluate import baselines as B  # noqa: E402
from projector.evaluate import stage as E  # noqa: E402
from projector.evaluate.data import load_beir, load_qa  # noqa: E402
from projector.evaluate.evaluators import RetrievalEvaluator, has_probability  # noqa: E402
from projector.evaluate.rows import Embedder, Row  # noqa: E402
from projector.formats import pairs as P  # noqa: E402
from projector.formats.vectors import l2_normalise  # noqa: E402

load("compare_children")  # each method timed in a process of its own, as benchmarks_compare_children
load("compare_report")  # targets, markdown and files, as benchmarks_compare_report
load("compare_scaling")  # --scaling, as benchmarks_compare_scaling
load("results")  # folders and times as results record them, as benchmarks_results
from benchmarks_compare_children import child_main, run_child  # noqa: E402
from benchmarks_compare_report import markdown, recorded_config, targets, write  # noqa: E402
from benchmarks_compare_scaling import scaling, scaling_markdown  # noqa: E402
from benchmarks_results import utc_now  # noqa: E402


@dataclass
class CompareConfig:
    sets: list[str] = field(default_factory=lambda: ["faq-perl-debian", "nq-wiki"])  # benchmark names
    pairs_root: str = str(REPO / "benchmarks" / "pairs")  # pairs folders: PAIRS_ROOT/NAME
    out: str = str(REPO / "benchmarks" / "results")  # NAME.md + NAME.json
    work: str | None = None  # scratch folder for models (None: a temp dir, deleted)
    low_rank: int = 128  # the low-rank projector rows (k < d)
    anchors: str = "llamaindex,st"  # comma list of llamaindex, st; or "none"
    anchor_epochs: int = 2  # epochs of the LlamaIndex adapter and of the matched projector timing run
    anchor_max_pairs: int | None = None  # cap on the anchors' training pairs (LlamaIndex embeds one at a time)
    st_epochs: int = 1  # full fine-tune epochs (MultipleNegativesRankingLoss, batch 32, lr 2e-5)
    threads: int = 1  # torch threads in every child (the same for all methods; 1 is fastest on a busy box)
    bootstrap: int = 1000  # paired bootstrap resamples (evaluate's CIs)
    seed: int = 0
    adapters: bool = False  # the ADAPTER_ROWS table instead of the shipped projector rows and anchors


# --adapters: (label, train() overrides), every one asymmetric k = d on the same LLM pairs. residual without a
# penalty would take AdamW's very steps of full W (Adam is shift-invariant), so only stay-close rows are listed.
# With fewer pairs than a batch an epoch is one step: ΔW = U Vᵀ from U = 0 barely moves at the recipe's lr 1e-4.
ADAPTER_ROWS = [
    ("projector asym k=d", {}),
    ("query-only", {"query_only": True}),
    ("residual, stay-close 1", {"adapter": "residual", "stay_close": 1.0}),
    ("residual, stay-close 10", {"adapter": "residual", "stay_close": 10.0}),
    ("residual, stay-close 30", {"adapter": "residual", "stay_close": 30.0}),
    ("residual, stay-close 100", {"adapter": "residual", "stay_close": 100.0}),
    ("residual, stay-close 10, query-only", {"adapter": "residual", "stay_close": 10.0, "query_only": True}),
    ("full W, lr 1e-3 (control for the lowrank rows)", {"lr": 1e-3}),
    ("lowrank r=8", {"adapter": "lowrank", "adapter_rank": 8}),
    ("lowrank r=8, lr 1e-3", {"adapter": "lowrank", "adapter_rank": 8, "lr": 1e-3}),
    ("lowrank r=32, lr 1e-3", {"adapter": "lowrank", "adapter_rank": 32, "lr": 1e-3}),
    ("lowrank r=32, lr 1e-3, stay-close 10",
     {"adapter": "lowrank", "adapter_rank": 32, "lr": 1e-3, "stay_close": 10.0}),
    ("lowrank r=32, lr 1e-3, query-only", {"adapter": "lowrank", "adapter_rank": 32, "lr": 1e-3, "query_only": True}),
]


# ---------------------------------------------------------------------------------------------- scorers


class AdapterScorer:
    """LlamaIndex's adapter as evaluate sees a scorer: cos(adapter(q), d); documents stay as embedded."""

    def __init__(self, adapter_dir: str):
        from llama_index.embeddings.adapter import LinearLayer

        layer = LinearLayer.load(adapter_dir)
        self.W_ = layer.linear.weight.detach().numpy()                            # (d, d)
        self.b_ = layer.linear.bias.detach().numpy() if layer.linear.bias is not None else 0.0

    def score(self, q_emb, d_emb) -> np.ndarray:
        q = np.asarray(q_emb) @ self.W_.T + self.b_                               # (nq, d)
        return l2_normalise(q) @ l2_normalise(d_emb).T                            # (nq, nd)


# ---------------------------------------------------------------------------------------------- one set


def pairs_ready(folder: Path) -> str | None:
    """None when FOLDER is a finished pairs folder, else why not."""
    if not (folder / P.MANIFEST).is_file() or not (folder / P.DATASET).is_dir():
        return f"{folder} has no manifest.json + dataset/ (generation not finished): skipped"
    return None


def train_pairs(pairs, limit: int | None, seed: int) -> list[tuple[str, str]]:
    """(query, passage_id) rows of the train split, a seeded sample of ``limit`` when capped."""
    rows = list(zip(pairs.splits["train"]["query"], map(str, pairs.splits["train"]["passage_id"])))
    if limit and limit < len(rows):
        keep = np.sort(np.random.default_rng(seed).permutation(len(rows))[:limit])
        rows = [rows[i] for i in keep]
    return rows


def subset_pairs(src: Path, dst: Path, rows: list[tuple[str, str]]) -> Path:
    """A pairs folder whose train split is ``rows`` (validation/test/passages as in SRC)."""
    keep = set(rows)
    P.write_copy(src, dst, [r for r in P.read_rows(src)
                            if r["split"] != "train" or (r["query"], str(r["passage_id"])) in keep])
    return dst


def compare_set(name: str, cfg: CompareConfig, work: Path) -> dict | None:
    from benchmarks_build import benchmark_dir
    from projector.embed.embedding import embed
    from projector.embed.encoder import encoder_source

    pairs_dir = Path(cfg.pairs_root) / name
    why = pairs_ready(pairs_dir)
    if why:
        print(f"[{name}] {why}", flush=True)
        return None
    pairs = P.load_pairs(pairs_dir)
    beir = load_beir(str(benchmark_dir(name)))
    ecfg = E.EvalConfig(bootstrap=cfg.bootstrap, seed=cfg.seed)
    emb = Embedder(None, 64)
    tr = pairs.splits["train"]
    n_train = len(tr["query"])
    print(f"[{name}] {len(beir.queries)} real queries, {len(beir.corpus)} passages; {n_train} LLM train pairs "
          f"({len(pairs.splits['validation']['query'])} validation)", flush=True)

    # The encoder pass every projector row and baseline shares: cold cost measured once, then cached.
    texts = list(dict.fromkeys(list(tr["query"]) + list(pairs.splits["validation"]["query"]) + pairs.passage_texts))
    started = time.time()
    embed(texts, None, cache_dir=False, show_progress=False)
    embed_once = time.time() - started
    for t in (texts, beir.queries, beir.corpus):
        emb(t, None)
    print(f"[{name}] embed once (cold, {len(texts)} training texts): {embed_once:.1f}s", flush=True)

    results: list[dict] = []   # {"name", "kind", "scorer" | "embeddings", "cost": {...}}
    corpus_emb = emb(beir.corpus, None)
    index = {pid: i for i, pid in enumerate(pairs.passage_ids)}
    train_q = emb(list(tr["query"]), None)
    train_p = emb([pairs.passage_texts[index[str(p)]] for p in tr["passage_id"]], None)
    for b in B.default_baselines(corpus_emb.shape[1], closed_form="qa"):
        tracemalloc.start()
        started = time.time()
        b.fit(corpus_emb, train_q, train_p)
        cost = {"wall_s": round(time.time() - started, 3),
                "peak_mb": round(tracemalloc.get_traced_memory()[1] / 2**20, 1), "memory": "tracemalloc"}
        tracemalloc.stop()
        results.append({"name": b.name, "kind": "baseline", "scorer": b, "cost": cost})

    floor = run_child("floor", {}, cfg.threads)
    base_train = dict(pairs=str(pairs_dir), threads=cfg.threads, sentence_transformers=False, seed=cfg.seed)
    shipped = [(f"projector {mode[:4]} k={'d' if rank is None else rank}", {"mode": mode, "rank": rank})
               for mode in ("asymmetric", "symmetric") for rank in (None, cfg.low_rank)]
    for label, overrides in ADAPTER_ROWS if cfg.adapters else shipped:
        out = work / name / label.replace(" ", "_").replace("=", "").replace(",", "")
        r = run_child("projector", {"train": {**base_train, "out": str(out), "mode": "asymmetric", **overrides}},
                      cfg.threads)
        results.append(_projector_row(label, out, r))
        print(f"[{name}] {label}: {r.get('wall_s')}s, selected {r.get('summary', {}).get('selected')}", flush=True)
    if cfg.adapters:  # no anchors: the question is which map to learn from the same pairs
        return evaluate_all(name, cfg, beir, pairs_dir, results, emb, ecfg,
                             {"embed_once_s": round(embed_once, 2), "embed_once_texts": len(texts),
                              "import_floor_rss_mb": floor.get("peak_rss_mb"), "train_pairs": n_train,
                              "anchor_pairs": "none (--adapters)", "timed_projector": None})

    anchors = [] if cfg.anchors == "none" else [a.strip() for a in cfg.anchors.split(",") if a.strip()]
    rows = train_pairs(pairs, cfg.anchor_max_pairs, cfg.seed)
    # Like for like with LlamaIndex, which embeds only its pairs' texts: those texts, cold, once.
    anchor_texts = list(dict.fromkeys([q for q, _ in rows] + [pairs.passage_texts[index[p]] for _, p in rows]))
    started = time.time()
    embed(anchor_texts, None, cache_dir=False, show_progress=False)
    embed_anchor = time.time() - started
    sub = subset_pairs(pairs_dir, work / name / "anchor-pairs", rows) if len(rows) < n_train else pairs_dir
    label = f"projector asym k=d, {cfg.anchor_epochs} epochs fixed"
    out = work / name / "projector_timed"
    r = run_child("projector", {"train": {**base_train, "pairs": str(sub), "out": str(out), "mode": "asymmetric",
                                          "epochs": cfg.anchor_epochs, "patience": cfg.anchor_epochs}}, cfg.threads)
    timed = _projector_row(label, out, r, note=f"timing twin of the LlamaIndex run: {len(rows)} pairs, "
                                               f"{cfg.anchor_epochs} epochs, no early stopping")
    results.append(timed)
    passage_text = dict(zip(pairs.passage_ids, pairs.passage_texts))
    if "llamaindex" in anchors:
        results.append(_llamaindex_row(name, cfg, work, rows, passage_text, encoder_source(None)))
    if "st" in anchors:
        results.append(_st_row(name, cfg, work, pairs, passage_text, beir, encoder_source(None)))
    return evaluate_all(name, cfg, beir, pairs_dir, results, emb, ecfg,
                         {"embed_once_s": round(embed_once, 2), "embed_once_texts": len(texts),
                          "embed_anchor_texts_s": round(embed_anchor, 2), "embed_anchor_texts": len(anchor_texts),
                          "import_floor_rss_mb": floor.get("peak_rss_mb"), "train_pairs": n_train,
                          "anchor_pairs": len(rows), "timed_projector": label})


def _projector_row(label: str, out: Path, r: dict, note: str = "") -> dict:
    if "error" in r:
        return {"name": label, "kind": "projector", "error": r["error"]}
    import projector

    s = r["summary"]
    val = s["validation"]
    note = (note + "; " if note else "") + (f"exported '{s['selected']}', {s['epochs_run']} epochs, "
                                            f"{s['pairs_per_second']} pairs/s; val NDCG@10 trained "
                                            f"{val['trained']['val_ndcg@10']:.3f}, "
                                            f"cosine {val['cosine']['val_ndcg@10']:.3f}")
    return {"name": label, "kind": "projector", "scorer": projector.load(out), "note": note,
            "cost": {"wall_s": r["wall_s"], "peak_mb": r["peak_rss_mb"], "memory": "child peak RSS (VmHWM)",
                     "train_only_s": s["train_seconds"], "epochs": s["epochs_run"]}}


def _llamaindex_row(name, cfg, work, rows, passage_text, encoder_path) -> dict:
    label = f"LlamaIndex linear adapter, {cfg.anchor_epochs} epochs"
    try:
        import llama_index.finetuning  # noqa: F401
    except Exception as e:  # ImportError or its dependencies' own import errors
        return {"name": label, "kind": "anchor", "error": f"not installed ({type(e).__name__}: {str(e)[:150]}); "
                                                          "pip install -e '.[bench]'"}
    out = work / name / "llamaindex"
    corpus = {pid: passage_text[pid] for pid in {p for _, p in rows}}
    print(f"[{name}] {label}: {len(rows)} pairs (it embeds each text itself, every epoch) ...", flush=True)
    r = run_child("llamaindex", {"pairs": rows, "corpus": corpus, "epochs": cfg.anchor_epochs, "out": str(out),
                                 "encoder_path": encoder_path}, cfg.threads)
    if "error" in r:
        return {"name": label, "kind": "anchor", "error": r["error"]}
    print(f"[{name}] {label}: {r['wall_s']}s", flush=True)
    return {"name": label, "kind": "anchor", "scorer": AdapterScorer(r["adapter"]),
            "note": f"{len(rows)} pairs; wall time includes its own unbatched embedding of every pair each epoch",
            "cost": {"wall_s": r["wall_s"], "peak_mb": r["peak_rss_mb"], "memory": "child peak RSS (VmHWM)"}}


def _st_row(name, cfg, work, pairs, passage_text, beir, encoder_path) -> dict:
    label = f"sentence-transformers full fine-tune (MNRL), {cfg.st_epochs} epoch(s)"
    tr = pairs.splits["train"]
    rows = [(q, passage_text[str(p)]) for q, p in zip(tr["query"], tr["passage_id"])]
    out = work / name / "st"
    print(f"[{name}] {label}: {len(rows)} pairs ...", flush=True)
    r = run_child("st", {"pairs": rows, "queries": beir.queries, "corpus": beir.corpus, "epochs": cfg.st_epochs,
                         "out": str(out), "encoder_path": encoder_path}, cfg.threads)
    if "error" in r:
        return {"name": label, "kind": "anchor", "error": r["error"]}
    print(f"[{name}] {label}: {r['wall_s']}s (+{r['reembed_s']}s re-embedding the test)", flush=True)
    return {"name": label, "kind": "anchor", "embeddings": (np.load(out / "queries.npy"), np.load(out / "corpus.npy")),
            "note": f"{len(rows)} pairs, all encoder weights; every stored vector must be re-embedded "
                    f"({r['reembed_s']}s for this test's queries + corpus)",
            "cost": {"wall_s": r["wall_s"], "peak_mb": r["peak_rss_mb"], "memory": "child peak RSS (VmHWM)"}}


# ---------------------------------------------------------------------------------------------- evaluate


def evaluate_all(name, cfg, beir, pairs_dir, results, emb, ecfg, info) -> dict:
    """Every scorer through evaluate_retrieval (same evaluator, calibration sample, bootstrap); the
    fine-tuned encoder's own embeddings through the same RetrievalEvaluator."""
    scored = [r for r in results if "scorer" in r]
    rows = [Row(r["name"], r["scorer"], r["kind"]) for r in scored]
    rep = E.evaluate_retrieval(ecfg, beir, rows, emb)
    by_name = {x["name"]: x for x in rep["rows"]}
    held = load_qa(str(pairs_dir), "test", None)   # the LLM questions' held-out split, for calibration too
    prob_rows = [Row("cosine", B.Cosine().fit(emb(held.corpus, None)), "baseline")] + \
                [x for x in rows if has_probability(x.scorer)]
    held_rep = {x["name"]: x for x in E.evaluate_retrieval(ecfg, held, prob_rows, emb)["rows"]}
    out_rows = []
    for r in results:
        row = {"name": r["name"], "kind": r["kind"], "cost": r.get("cost", {}), "note": r.get("note", "")}
        if "error" in r:
            row["error"] = r["error"]
        elif r["name"] in by_name:
            x = by_name[r["name"]]
            row |= {"metrics": x["metrics"], "ci95": x["ci95"], "delta_vs_cosine": x["delta_vs_cosine"],
                    "ece": x["calibration"].get("ece@15"), "calibration": x["calibration"]}
            if r["name"] in held_rep:
                row["heldout_llm_test"] = {"ndcg@10": held_rep[r["name"]]["metrics"]["ndcg@10"],
                                           "ece": held_rep[r["name"]]["calibration"].get("ece@15")}
        else:   # own embeddings (full fine-tune)
            q, d = r["embeddings"]
            row["metrics"] = RetrievalEvaluator(q, d, beir.qrels)(B.Cosine().fit(d))
            row["ece"] = None
        out_rows.append(row)
    cos = next(x for x in out_rows if x["name"] == "cosine")
    ref = next((x for x in out_rows if x["name"] == "projector asym k=d" and "cost" in x), None)
    for x in out_rows:
        if ref and x.get("cost", {}).get("wall_s") and x["kind"] != "baseline":
            x["time_vs_projector"] = round(x["cost"]["wall_s"] / ref["cost"]["wall_s"], 2)
    result = {"set": name, "data": rep["data"], "info": info, "rows": out_rows,
              "cosine_ndcg@10": cos["metrics"]["ndcg@10"], "config": recorded_config(cfg),
              "when": utc_now()}
    result["targets"] = targets(result)
    return result


# ---------------------------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child_main(argv[1], argv[2])
        return 0
    if argv[:1] == ["debian-pkgs"]:  # issue 10: the criterion benchmark, its own file (labelled items, not BEIR)
        return load("debian_pkgs").main(argv[1:])
    if "--learning-curve" in argv:  # issue 11 piece 6: its own file, whose `run` takes the other arguments
        return load("learning_curve").main(["run", *[a for a in argv if a != "--learning-curve"]])
    p = argparse.ArgumentParser(prog="python benchmarks/compare.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = CompareConfig()
    p.add_argument("sets", nargs="*", default=d.sets)
    p.add_argument("--scaling", action="store_true", help="only the synthetic throughput table")
    p.add_argument("--adapters", action="store_true", help="the few-pairs maps (ADAPTER_ROWS) beside today's recipe")
    p.add_argument("--scaling-sizes", default="10000,100000,1000000")
    p.add_argument("--scaling-runs", default="1x1",
                   help="processes x threads per run, comma-separated, e.g. 1x1,1x2,2x1 (2x1: torchrun, 2 gloo ranks)")
    for f in dataclasses.fields(CompareConfig):
        if f.name not in ("sets", "adapters"):
            kind = {"int": int, "int | None": int}.get(str(f.type), str)
            p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=getattr(d, f.name))
    a = vars(p.parse_args(argv))
    if a.pop("scaling"):
        sizes = [int(x) for x in a.pop("scaling_sizes").split(",")]
        rows = []
        for run in a.pop("scaling_runs").split(","):
            processes, threads = (int(x) for x in run.lower().split("x"))
            rows += scaling(sizes, threads, processes=processes)
        md = scaling_markdown(rows)
        print(md)
        Path(a["out"]).mkdir(parents=True, exist_ok=True)
        (Path(a["out"]) / "scaling.md").write_text(md)
        (Path(a["out"]) / "scaling.json").write_text(json.dumps(rows, indent=2) + "\n")
        return 0
    a.pop("scaling_sizes"), a.pop("scaling_runs")
    cfg = CompareConfig(**a)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(cfg.work or tmp)
        for name in cfg.sets:
            res = compare_set(name, cfg, work)
            if res is not None:
                write(res, Path(cfg.out))
                print(markdown(res), flush=True)
    return 0


load("build")  # benchmark_dir and the builders, as benchmarks_build

if __name__ == "__main__":
    raise SystemExit(main())
