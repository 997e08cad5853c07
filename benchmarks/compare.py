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
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
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


# ---------------------------------------------------------------------------------------------- children
# A child runs one method in a fresh process, so its wall time and peak RSS are its own.


def run_child(kind: str, spec: dict, threads: int, processes: int = 1) -> dict:
    """Run CHILDREN[kind](spec) in a fresh process (``processes`` > 1: under torchrun, gloo on CPU)."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = {**spec, "result": str(Path(tmp) / "result.json"), "threads": threads}
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": str(threads),
               "LLAMA_INDEX_CACHE_DIR": str(Path(tmp) / "llama_index_cache"), "TOKENIZERS_PARALLELISM": "false",
               "GLOO_SOCKET_IFNAME": "lo"}
        launcher = [sys.executable] if processes == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        p = subprocess.run([*launcher, __file__, "--child", kind, str(Path(tmp) / "spec.json")], env=env,
                           capture_output=True, text=True)
        if p.returncode != 0 or not Path(spec["result"]).is_file():
            tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
            return {"error": f"{kind} child failed (exit {p.returncode}): {' | '.join(tail)[-400:]}"}
        out = json.loads(Path(spec["result"]).read_text())
        if processes > 1:  # memory of the whole job: every rank's peak RSS, summed
            ranks = [json.loads(f.read_text()) for f in Path(tmp).glob("rss.*.json")]
            out["peak_rss_mb"] = round(sum(r["peak_rss_mb"] for r in ranks), 1)
            out["processes"] = processes
        return out


def _child_main(kind: str, spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    import torch

    torch.set_num_threads(spec["threads"])
    started = time.time()
    out = CHILDREN[kind](spec)
    out.setdefault("wall_s", round(time.time() - started, 2))
    out["peak_rss_mb"] = peak_rss_mb()
    rank = int(os.environ.get("RANK", "0"))
    if "WORLD_SIZE" in os.environ:
        (Path(spec["result"]).parent / f"rss.{rank}.json").write_text(json.dumps({"peak_rss_mb": out["peak_rss_mb"]}))
    if rank == 0:
        Path(spec["result"]).write_text(json.dumps(out, default=str))


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not getrusage's ru_maxrss: on Linux a forked child's ru_maxrss starts
    at the parent's RSS at fork time (kept across exec), so every child would report at least the parent's."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # not Linux: KiB (macOS: bytes)


def child_floor(spec: dict) -> dict:
    """Imports only: the RSS a child pays for Python + numpy + torch + projector before doing anything."""
    import torch  # noqa: F401

    return {}


def child_projector(spec: dict) -> dict:
    from projector.train.stage import train

    started = time.time()
    summary = train(**spec["train"])
    return {"wall_s": round(time.time() - started, 2), "summary": summary}


def child_llamaindex(spec: dict) -> dict:
    """LlamaIndex's linear adapter through its public API; it embeds every pair itself, every epoch."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.finetuning import EmbeddingAdapterFinetuneEngine
    from llama_index.finetuning.embeddings.common import EmbeddingQAFinetuneDataset

    pairs = spec["pairs"]  # [[query, passage_id], ...]
    dataset = EmbeddingQAFinetuneDataset(
        queries={f"q{i}": q for i, (q, _) in enumerate(pairs)},
        corpus=spec["corpus"],
        relevant_docs={f"q{i}": [pid] for i, (_, pid) in enumerate(pairs)})
    started = time.time()
    base = HuggingFaceEmbedding(model_name=spec["encoder_path"], device="cpu")
    engine = EmbeddingAdapterFinetuneEngine(dataset, base, epochs=spec["epochs"], model_output_path=spec["out"],
                                            device="cpu", verbose=False)
    engine.finetune()
    wall = time.time() - started
    engine.get_finetuned_model()  # the public way a user gets it back: proves the saved adapter loads
    return {"wall_s": round(wall, 2), "adapter": spec["out"]}


def child_st(spec: dict) -> dict:
    """Full fine-tune of the encoder (MultipleNegativesRankingLoss), then re-embed queries and corpus."""
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.training_args import BatchSamplers

    started = time.time()
    model = SentenceTransformer(spec["encoder_path"], device="cpu")
    train_ds = Dataset.from_dict({"anchor": [q for q, _ in spec["pairs"]], "positive": [p for _, p in spec["pairs"]]})
    args = SentenceTransformerTrainingArguments(
        output_dir=spec["out"], num_train_epochs=spec["epochs"], per_device_train_batch_size=32, learning_rate=2e-5,
        warmup_ratio=0.1, batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no", report_to=[],
        logging_steps=1000, seed=0, use_cpu=True, disable_tqdm=True)
    SentenceTransformerTrainer(model=model, args=args, train_dataset=train_ds,
                               loss=MultipleNegativesRankingLoss(model)).train()
    wall = time.time() - started
    started = time.time()
    enc = lambda t: model.encode(t, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
    np.save(Path(spec["out"]) / "queries.npy", enc(spec["queries"]))
    np.save(Path(spec["out"]) / "corpus.npy", enc(spec["corpus"]))
    return {"wall_s": round(wall, 2), "reembed_s": round(time.time() - started, 2)}


CHILDREN = {"floor": child_floor, "projector": child_projector, "llamaindex": child_llamaindex, "st": child_st}


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
        return _evaluate_all(name, cfg, beir, pairs_dir, results, emb, ecfg,
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
    return _evaluate_all(name, cfg, beir, pairs_dir, results, emb, ecfg,
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


def _evaluate_all(name, cfg, beir, pairs_dir, results, emb, ecfg, info) -> dict:
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
              "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    result["targets"] = targets(result)
    return result


def targets(res: dict) -> list[dict]:
    """The issue's targets, each with met / by how much."""
    rows = {r["name"]: r for r in res["rows"] if "metrics" in r}
    cos = res["cosine_ndcg@10"]
    proj = {n: r for n, r in rows.items() if r["kind"] == "projector" and "fixed" not in n}
    out = []
    if proj:
        best = max(proj, key=lambda n: proj[n]["metrics"]["ndcg@10"])
        v = proj[best]["metrics"]["ndcg@10"]
        out.append({"target": "best projector NDCG@10 >= 1.10 x frozen cosine", "value": round(v / cos, 4),
                    "met": v >= 1.10 * cos, "detail": f"{best} {v:.4f} vs cosine {cos:.4f} ({v / cos:.3f}x)"})
        li = next((r for n, r in rows.items() if n.startswith("LlamaIndex")), None)
        if li:
            lv = li["metrics"]["ndcg@10"]
            out.append({"target": "best projector NDCG@10 >= LlamaIndex adapter", "value": round(v - lv, 4),
                        "met": v >= lv, "detail": f"{v:.4f} vs {lv:.4f} ({v - lv:+.4f})"})
        eces = {n: r["ece"] for n, r in proj.items() if r.get("ece") is not None}
        if eces:
            n = min(eces, key=eces.get)
            held = proj[best].get("heldout_llm_test", {}).get("ece")
            out.append({"target": "ECE of probability() <= 0.03", "value": round(proj[best]["ece"], 4),
                        "met": proj[best]["ece"] <= 0.03,
                        "detail": f"{best}: real queries {proj[best]['ece']:.4f}; LLM held-out test "
                                  f"{held if held is None else round(held, 4)}; lowest over projector rows {n} "
                                  f"{eces[n]:.4f}"})
    all_rows = {r["name"]: r for r in res["rows"]}
    timed = all_rows.get(res["info"]["timed_projector"])
    li = next((r for n, r in all_rows.items() if n.startswith("LlamaIndex") and "cost" in r and r["cost"]), None)
    if timed and li and timed.get("cost"):
        t, l = timed["cost"]["wall_s"], li["cost"]["wall_s"]
        pair_cold = t + res["info"].get("embed_anchor_texts_s", 0.0)
        cold = t + res["info"]["embed_once_s"]
        out.append({"target": "projector trains >= 10x faster than LlamaIndex (same epochs, data)",
                    "value": round(l / t, 1), "met": l / t >= 10,
                    "detail": f"LlamaIndex {l:.1f}s vs projector {t:.1f}s on cached embeddings ({l / t:.1f}x); "
                              f"+ embedding the same pairs' texts once, cold: {pair_cold:.1f}s ({l / pair_cold:.1f}x); "
                              f"+ projector's whole cold encoder pass (all passages + validation queries): "
                              f"{cold:.1f}s ({l / cold:.1f}x)"})
    return out


# ---------------------------------------------------------------------------------------------- output


def fmt(v, nd=3) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def markdown(res: dict) -> str:
    info = res["info"]
    lines = [f"## {res['set']}: {res['data']['queries']} real queries, {res['data']['corpus']} passages",
             "",
             f"Trained on {info['train_pairs']} LLM-made (query, passage) pairs from the corpus alone "
             f"(anchors' timing: {info['anchor_pairs']}); evaluated on the real queries over the whole corpus. "
             f"Encoder all-MiniLM-L6-v2 (frozen except the full fine-tune). {res['when']}.",
             "",
             "| method | NDCG@10 | Δ vs cosine [95% CI] | MRR@10 | Recall@10 | ECE | train wall s | × projector | "
             "peak MB | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        if "error" in r:
            lines.append(f"| {r['name']} | – | – | – | – | – | – | – | – | {r['error']} |")
            continue
        m, c = r["metrics"], r.get("cost", {})
        d = r.get("delta_vs_cosine", {}).get("ndcg@10")
        ds = f"{d['delta']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d else "–"
        mem = f"{c['peak_mb']:.0f}" + (" (tm)" if c.get("memory") == "tracemalloc" else "") if c else "–"
        lines.append(f"| {r['name']} | {m['ndcg@10']:.3f} | {ds} | {m['mrr@10']:.3f} | {m['recall@10']:.3f} | "
                     f"{fmt(r.get('ece'))} | {fmt(c.get('wall_s'), 1)} | {fmt(r.get('time_vs_projector'), 2)} | "
                     f"{mem} | {r.get('note', '')} |")
    lines += ["",
              f"Costs: `train wall s` of a trained row is its child process's wall time (projector: `train()` on "
              f"cached embeddings, incl. loading and candidate selection; anchors: including the embedding they do "
              f"themselves). The shared encoder pass, cold: {info['embed_once_s']}s for {info['embed_once_texts']} "
              f"texts (`embed once`)"
              + (f"; the anchors' pairs' texts alone: {info['embed_anchor_texts_s']}s for {info['embed_anchor_texts']} "
                 "texts" if info.get("embed_anchor_texts") else "")
              + ". Peak MB: the child process's peak RSS (VmHWM; its imports alone (Python, numpy, torch, projector): "
              f"{info['import_floor_rss_mb']} MB); (tm) = tracemalloc peak of an in-process baseline fit. "
              "ECE: 15 bins, on every positive + 5 hard + 5 random negatives per real query; only for rows with "
              "probability(). `× projector`: wall time over `projector asym k=d`'s.",
              "", "Targets:", ""]
    lines += [f"- {'MET' if t['met'] else 'MISSED'}: {t['target']}: {t['detail']}" for t in res["targets"]]
    return "\n".join(lines) + "\n"


def recorded_config(cfg: CompareConfig) -> dict:
    """The settings as a result records them: a folder inside the repo relative to it (``benchmarks/pairs``),
    so that committed results name no machine's paths; a folder elsewhere as it was given."""
    rec = dataclasses.asdict(cfg)
    for key in ("pairs_root", "out", "work"):
        if rec[key] is not None and Path(rec[key]).resolve().is_relative_to(REPO):
            rec[key] = Path(rec[key]).resolve().relative_to(REPO).as_posix()
    return rec


def write(res: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"adapters-{res['set']}" if res["config"].get("adapters") else res["set"]
    (out / f"{stem}.md").write_text(markdown(res))
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")


# ---------------------------------------------------------------------------------------------- scaling


def child_scaling(spec: dict) -> dict:
    """One epoch of projector's training loop on n synthetic pairs (CPU): pairs/s and peak memory."""
    import torch

    from projector.train.projection import Projection
    from projector.train.distributed import init_distributed
    from projector.train.fit import Data, Split, fit, validate
    from projector.train.stage import TrainConfig

    n, d = spec["n"], spec["dim"]
    g = torch.Generator().manual_seed(0)
    corpus = torch.nn.functional.normalize(torch.randn(max(n // 2, 1000), d, generator=g), dim=1)  # (N, d)
    pos = torch.randint(len(corpus), (n,), generator=g)                                          # (n,)
    q = torch.nn.functional.normalize(corpus[pos] + 0.5 * torch.randn(n, d, generator=g), dim=1)   # (n, d)
    vpos = torch.arange(512)
    vq = torch.nn.functional.normalize(corpus[vpos] + 0.5 * torch.randn(512, d, generator=g), dim=1)
    val = Split(vq, corpus[:2000], [{int(i)} for i in vpos], pos=vpos)
    data = Data(corpus, q, pos, None, None, val)
    cfg = TrainConfig(pairs="-", out="-", epochs=spec["epochs"], patience=spec["epochs"], device="cpu")
    model = Projection(d, d, "asymmetric")
    ddp = init_distributed("cpu")  # under torchrun: every rank holds the data, each trains its share of a batch
    started = time.time()
    fit(model, data, cfg, None, ddp=ddp)
    wall = time.time() - started
    started = time.time()
    validate(model, data, cfg.batch_size)   # what fit spends per epoch outside the training steps
    steps = max(wall - spec["epochs"] * (time.time() - started), 1e-9)
    return {"n": n, "epochs": spec["epochs"], "wall_s": round(wall, 2), "steps_s": round(steps, 2),
            "pairs_per_s": round(n * spec["epochs"] / steps, 1)}


CHILDREN["scaling"] = child_scaling


def scaling(sizes=(10_000, 100_000, 1_000_000), threads: int = 1, dim: int = 384, epochs: int = 1,
            processes: int = 1) -> list[dict]:
    """``threads`` per process; ``processes`` > 1 trains under torchrun (gloo), each rank holding the data."""
    rows = []
    for n in sizes:
        r = run_child("scaling", {"n": n, "dim": dim, "epochs": epochs}, threads, processes)
        rows.append(r if "error" in r else {**r, "threads": threads, "processes": processes})
        print(f"scaling n={n} processes={processes} threads={threads}: {r}", flush=True)
    return rows


def scaling_markdown(rows: list[dict]) -> str:
    lines = ["## projector training throughput, synthetic embeddings (d=384, asymmetric k=d, batch 256, CPU)", "",
             "| pairs | processes × threads | epochs | wall s (fit, incl. validation) | training steps s | "
             "pairs/s (steps) | peak RSS MB (all processes) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| – | – | – | – | – | – | {r['error']} |")
        else:
            lines.append(f"| {r['n']:,} | {r.get('processes', 1)} × {r.get('threads', 1)} | {r['epochs']} | "
                         f"{r['wall_s']} | {r['steps_s']} | {r['pairs_per_s']:,.0f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child_main(argv[1], argv[2])
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
