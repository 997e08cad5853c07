"""compare.py's methods, each timed in a process of its own: its wall time and peak RSS are its alone.

    r = run_child("projector", {"train": {...}}, threads=1)   # {"wall_s", "peak_rss_mb", "summary"} or {"error"}
    r = run_child("scaling", {"n": 10_000, "dim": 384, "epochs": 1}, threads=1, processes=2)   # under torchrun

A child is ``python benchmarks/compare.py --child KIND SPEC.json``: it imports what compare.py imports, so
the ``floor`` child (imports only) measures the RSS every child pays before it does anything. ``CHILDREN``
names what each KIND runs: ``floor``, ``projector`` (``projector.train.stage.train``), ``llamaindex`` (the
LlamaIndex linear adapter), ``st`` (a full sentence-transformers fine-tune), and ``scaling``, which
``compare_scaling.py`` adds (one epoch of projector's training loop on synthetic pairs).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().with_name("compare.py")   # every child runs as compare.py --child KIND SPEC


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
        p = subprocess.run([*launcher, str(SCRIPT), "--child", kind, str(Path(tmp) / "spec.json")], env=env,
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


def child_main(kind: str, spec_path: str) -> None:
    """The child process: run CHILDREN[kind] on the spec, write its result (rank 0) and peak RSS (every rank)."""
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
