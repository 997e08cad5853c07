"""Stage 2: train a projection on a pairs dataset, pick the best candidate on validation, export it.
(The stage's flow, config -> data -> candidates -> selection -> export, read top to bottom. What differs per
task -- default mode, loss, metric, embedding, test split -- is its entry in ``projector.train.tasks``; what
trains and what validates, the folder's LLM-written splits or your files, ``projector.train.supervision``.)

    python -m projector.train --pairs runs/quickstart/pairs --out runs/quickstart/model
    python -m projector.train --pairs runs/nat --mode symmetric --rank 128 --out runs/nat-model
    python -m projector.train --pairs runs/attr --out runs/attr-model     # items (generate --judge attribute)

Inputs: a pairs folder from ``projector.generate`` (manifest.json, passages.jsonl, dataset/ with
train/validation/test): qa (query, passage) rows train the asymmetric model, pairs and items (``--judge
attribute``) the symmetric one, each with its loss and metric (``projector.train.tasks``); a folder from
``projector teach`` brings the hard negatives the LLM judged (``--no-judged-negatives`` ignores them).

Recipe (docs/research.md, measured): identity init, batch 256, AdamW lr 1e-4, L2-normalised projected vectors,
learnable scale (init 20) and bias (init -10), early stopping on validation NDCG@10. The candidates go
through the same validation (``projector.train.candidates``): the frozen-cosine start ("cosine"), the ridge
closed form, regularised CCA (asymmetric qa, from 4·d training pairs), and the trained model; the best by
NDCG@10 is exported. If training does not beat cosine, the log and projector.json say so. Its scale and
bias are then Platt-fitted on validation pairs sampled the way ``projector.evaluate`` samples calibration
pairs (``calibrate``), so ``probability()`` is a calibrated probability of relevance, not a training
by-product.

Items: the candidates are cosine, shrinkage LDA on the train labels ("lda", closed form, rank ≤ classes-1,
exported uncentred) and the trained map at full rank d and, without ``--rank``, at rank 64 ("trained",
"trained-k64"); selection and early stopping use the validation items' label mAP (each item a query over
the others, relevant = same label); the Platt fit uses the pairs the validation items imply. A few hundred
items are one or two batches an epoch, so lr, epochs and patience default to 1e-3, 300, 20 there.

Few pairs (issue 11): ``--adapter residual|lowrank`` learns ΔW on top of the start (``--adapter-rank`` r for
``W₀ + U Vᵀ``), ``--stay-close λ`` keeps projected vectors near the originals, ``--query-only`` learns W_q
alone; the trained model still goes through the same selection, and the export is plain W_q/W_a.

Outputs in --out: model.safetensors + projector.json (see ``projector.train.export``), sentence-transformers/
(the same model as a SentenceTransformer), train_log.jsonl (one line per epoch of each trained candidate,
naming it), config.json (resolved), and checkpoint/ (checkpoint-kR/ for another trained rank: re-running the
same command after an interruption resumes from the last finished epoch).
Embeddings are cached on disk (``projector.embed``): training twice embeds nothing again.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from pathlib import Path

import torch

from projector import cli
from projector.embed.given import seed_passage_vectors
from projector.embed.encoder import encoder_identity
from projector.embed.pool import encoding_pool
from projector.files import write_json, write_text
from projector.formats.pairs import ITEMS, Pairs, has_test_rows, load_pairs
from projector.train.candidates import (METRIC_NAMES, calibrate, closed_form_weights, closed_forms, gate, paired_gain,
                                        select, trained_ranks, verdict)
from projector.train.checks import check_config, check_task
from projector.train.config import TrainConfig
from projector.train.data import embedder
from projector.train.distributed import init_distributed, pick_device
from projector.train.inputs import Data
from projector.train.fit import fit, loop_defaults, ndcg_at_10, primary_metric, query_scores, validate
from projector.train.labelfit import item_counts, label_ids
from projector.train.projection import Projection, principal_directions
from projector.train.supervision import read_supervision
from projector.train.tasks import task_of

log = logging.getLogger("projector.train")


# ------------------------------------------------------------------------------------------ the stage


def train(config: TrainConfig | None = None, **overrides) -> dict:
    """Train on ``config.pairs`` and write the artifact folder ``config.out``; returns the summary dict."""
    cfg = dataclasses.replace(config, **overrides) if config is not None else TrainConfig(**overrides)
    check_config(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = load_pairs(cfg.pairs, items=True)
    task = task_of(pairs)  # qa, pairs or items: projector.train.tasks
    items = task.name == ITEMS
    cfg = dataclasses.replace(cfg, **loop_defaults(cfg, task.name))  # saved resolved
    mode = cfg.mode or task.mode
    check_task(cfg, pairs, mode)
    sup = read_supervision(cfg, pairs)  # what trains, what validates; a bad file stops here, before any embedding
    ddp = init_distributed(cfg.device)
    device = ddp.device if ddp else pick_device(cfg.device)
    main = ddp is None or ddp.main
    if not main:  # one voice: rank 0 logs, checkpoints and exports
        log.setLevel(logging.WARNING)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if main:
        write_json(out / "config.json", {**dataclasses.asdict(cfg), "resolved_mode": mode, "device_used": str(device),
                                         "processes": ddp.world if ddp else 1})

    started = time.time()
    if ddp is not None and not ddp.main:
        ddp.barrier()  # rank 0 embeds first; the others then read everything from the cache
    devices = [x.strip() for x in cfg.encode_devices.split(",") if x.strip()] if cfg.encode_devices else None
    if cfg.passage_vectors and main:  # your own passage vectors: into the cache, so embed() sends no passage
        seed_passage_vectors(cfg.passage_vectors, pairs.passage_ids, pairs.passage_texts, cfg.encoder,
                             [cfg.document_template], cfg.cache_dir, cfg.passage_vectors_columns)
    with encoding_pool(cfg.encoder, workers=cfg.encode_workers, devices=devices):  # no-op unless asked / >1 GPU
        data = task.embed(pairs, cfg, device, sup)
    if ddp is not None and ddp.main:
        ddp.barrier()
    embed_seconds = time.time() - started
    dim = data.q.shape[1]
    rank = cfg.rank or dim
    key = primary_metric(data)
    new = lambda k=rank: Projection(dim, k, mode, cfg.normalize, cfg.scale_init, cfg.bias_init).to(device)
    fit_on = (data.corpus if data.corpus is not None else data.q if data.b is None else
              torch.cat([data.q, data.b])).cpu().numpy()
    dirs = principal_directions(fit_on, new().rank)                              # (k, d): identity if k = d
    validated_on = {"queries": len(data.val.q), "source": sup.validated_on()}
    trained_on = {"pairs": len(data.q), "source": sup.trained_on()}
    if items and cfg.min_llm_confidence is not None and any(s.origin == "llm" for s in sup.trains):
        trained_on["min_llm_confidence"] = cfg.min_llm_confidence
    trained_on |= {k: v for k, v in data.notes.items() if k != "sources"}
    crossfitted = sup.crossfit
    log.info("%s (%d train%s, %d validation %s%s), d=%d, rank=%d, mode=%s, device=%s; embedded in %.1fs",
             "labelled items" if items else f"{pairs.task} pairs", len(data.q),
             f": {trained_on['source']}" if sup.from_you else "", len(data.val.q),
             "items" if items else "queries",
             f": {validated_on['source']}" if sup.validates.origin == "yours" else "",
             dim, rank, mode, device, embed_seconds)

    candidates = {("cosine" if rank == dim else f"pca-{rank}"): new().set_weights(dirs)}
    candidates.update(closed_forms(data, dirs, mode, cfg.ridge, new))
    cf = None if items else closed_form_weights(data, dirs, mode, cfg.ridge)
    histories, states, started = {}, {}, time.time()
    for r in [] if crossfitted else trained_ranks(cfg.rank, dim, data.kind):  # the trained one(s)
        name, ckpt = ("trained", "checkpoint") if not histories else (f"trained-k{r}", f"checkpoint-k{r}")
        model = Projection(dim, r, mode, cfg.normalize, cfg.scale_init, cfg.bias_init, cfg.adapter,
                           cfg.adapter_rank, cfg.query_only).to(device)
        model.set_weights(*(cf if cfg.init == "closed-form" and cf is not None else
                            (dirs if r == rank else principal_directions(fit_on, r),)))
        on_epoch = lambda st, name=name: write_log(out, _log_rows({**histories, name: st["history"]}))
        states[name] = fit(model, data, cfg, out / ckpt, on_epoch=on_epoch, ddp=ddp)
        histories[name] = states[name]["history"]
        candidates[name] = model
    train_seconds = time.time() - started
    if ddp is not None:
        ddp.close()
        if not ddp.main:
            return {"rank": ddp.rank, "exported": False}
    write_log(out, _log_rows(histories))
    metrics = {name: validate(m, data, cfg.batch_size) for name, m in candidates.items()}
    val_scores = {name: query_scores(m, data.val) for name, m in candidates.items()}  # (m,) per query, each
    held_out = {}  # crossfitted: each candidate's out-of-fold pair scores, for its Platt fit
    if crossfitted:  # in-sample on your labels: replaced by the half-split scores (projector.train.crossfit)
        val_scores = _crossfit_scores(data, cfg, dirs, mode, new, device, held_out)
        for name, s in val_scores.items():
            metrics[name] = {"val_map": float(s.mean()), "in_sample_val_map": metrics[name]["val_map"]}
    gate(metrics, val_scores, cfg.select_confidence, cfg.seed)
    selected = select(metrics, key)
    scorers = dict(candidates)
    if rank != dim:  # frozen cosine is not a rank-k candidate, but every gain is reported against it
        scorers = {"cosine": Projection(dim, None, mode, cfg.normalize, cfg.scale_init, cfg.bias_init).to(device),
                   **candidates}
        metrics = {"cosine": validate(scorers["cosine"], data, cfg.batch_size), **metrics}
    for name, m in scorers.items():  # probabilities that mean something, for every candidate alike
        metrics[name]["calibration"] = calibrate(m, data, cfg, held_out.get(name))
    cal = metrics[selected]["calibration"]
    log.info("probability(): Platt-calibrated on %d %s pairs (%d positive): ECE %.3f, log-loss %.3f",
             cal["pairs"], "out-of-fold (half-split)" if held_out else "validation", cal["positives"],
             cal["ece@15"], cal["logloss"])
    baseline, what = "cosine", METRIC_NAMES[key]
    log.info("validation %s of every candidate: %s; selected %s", what,
             ", ".join(f"{n} {m[key]:.4f}" for n, m in metrics.items()), selected)
    warning = _warning(metrics, key, selected, val_scores, scorers, data, cfg, rank != dim, sup)
    if warning:  # the case users must hear about: gradient training did not beat frozen cosine
        log.warning("WARNING: %s", warning)
    elif histories and not selected.startswith("trained"):
        best = select({n: m for n, m in metrics.items() if n.startswith("trained")}, key)
        log.info("note: %s scored at least the trained model's on validation (%s %.4f vs %.4f); exporting %s",
                 selected, what, metrics[selected][key], metrics[best][key], selected)
    folded_ndcg = None
    if task.ranks_corpus:  # ranking a query against the corpus: how close the folded query map M comes
        folded = copy.deepcopy(candidates[selected])
        folded.normalize = "query" if folded.normalize == "both" else folded.normalize  # = ranking by (M q)·d
        folded_ndcg = ndcg_at_10(folded, data.val)
    test = _test_metrics(pairs, task, cfg, data, scorers, device)
    history, epochs_run = histories.get("trained", []), sum(len(h) for h in histories.values())
    summary = {
        "selected": selected, "warning": warning, "validation": metrics, "validated_on": validated_on,
        "trained_on": trained_on,
        "baseline": baseline, "metric": key,
        "best_epoch": states["trained"]["best_epoch"] if states else None, "epochs_run": len(history),
        "train_pairs": len(data.q),
        "train_seconds": round(train_seconds, 3), "embed_seconds": round(embed_seconds, 3),
        "pairs_per_second": round(len(data.q) * epochs_run / max(train_seconds, 1e-9), 1) if epochs_run else None,
        "device": str(device), "processes": ddp.world if ddp else 1, "val_ndcg@10_folded": folded_ndcg, "test": test,
        "runs": {n: {"rank": candidates[n].rank, "best_epoch": st["best_epoch"], "epochs_run": len(st["history"])}
                 for n, st in states.items()},
        "items": {"classes": list(label_ids(pairs.splits["train"]["label"])), "splits": item_counts(pairs.splits)}
        if items else None,
    }
    from projector.train import export

    export.write_artifact(out, candidates[selected], cfg=cfg, mode=mode, pairs=pairs, summary=summary,
                          encoder_identity=encoder_identity(cfg.encoder))
    b, a = metrics[baseline][key], metrics[selected][key]
    log.info("validation %s: %s %.4f -> %s %.4f (%+.4f); %d epochs, %.1fs training (%.0f pairs/s); wrote %s",
             what, baseline, b, selected, a, a - b, epochs_run, train_seconds, summary["pairs_per_second"] or 0, out)
    return summary


def _warning(metrics: dict, key: str, selected: str, val_scores: dict, scorers: dict, data: Data,
             cfg: TrainConfig, low_rank: bool, sup) -> str | None:
    """What users must hear when the export does not beat frozen cosine on validation (None: it does), with the
    remedy where it is in their hands."""
    what, rank = METRIC_NAMES[key], cfg.rank
    warning = verdict(metrics, key, selected, "cosine")
    if low_rank:  # at rank k nothing is cosine: say whether what is exported beats it (faq-perl-debian: a
        # pca-128 that tied cosine on 30 validation queries lost 1.5% NDCG@10 on the real ones)
        vs = paired_gain(val_scores[selected], query_scores(scorers["cosine"], data.val), "cosine",
                         cfg.select_confidence, cfg.seed)
        metrics[selected]["gain_vs_cosine"] = vs
        if not vs["beyond_noise"]:
            lower = (f"at rank {rank} the exported '{selected}' does not beat full-rank cosine on validation beyond "
                     f"noise ({what} {metrics[selected][key]:.4f} vs {metrics['cosine'][key]:.4f}, {vs['mean']:+.4f} "
                     f"on {vs['queries']} queries, {vs['confidence']:.0%} CI [{vs['ci'][0]:+.4f}, "
                     f"{vs['ci'][1]:+.4f}]): it may rank below cosine on real queries; check it on yours "
                     f"(evaluate --queries) or train at full rank")
            warning = f"{warning}; {lower}" if warning else lower
    if warning and sup.yours("queries", "validation") is not None and sup.yours("queries", "train") is None:
        warning += ("; your --validation-queries are real users' queries: with more of them and their passages, "
                    "train on those (--train-queries FILE, other queries than the validation ones), which taught "
                    "more than LLM-written questions wherever we measured")
    return warning


def _log_rows(histories: dict[str, list[dict]]) -> list[dict]:
    """train_log.jsonl's rows: every trained candidate's epochs in turn, each row naming its candidate."""
    return [{**row, "candidate": name} for name, rows in histories.items() for row in rows]


def _test_metrics(pairs: Pairs, task, cfg: TrainConfig, data: Data, scorers: dict, device) -> dict | None:
    """Every candidate on the test split (reported, never used to choose), or None without a usable one."""
    split = task.test_split(pairs, cfg, data, device) if has_test_rows(pairs) else None
    if split is None:
        return None
    test = {name: validate(m, data, cfg.batch_size, split) for name, m in scorers.items()}
    return {name: {k.replace("val_", "test_"): v for k, v in m.items()} for name, m in test.items()}


def _crossfit_scores(data: Data, cfg: TrainConfig, dirs, mode: str, new, device, held_out: dict) -> dict:
    """Every closed-form candidate's per-item average precision on repeated half-splits of your labels."""
    from projector.train.crossfit import crossfit

    sources = data.notes["sources"]
    embed_texts = lambda texts: embedder(cfg)(texts, cfg.query_template, "crossfit-items").to(device)  # noqa: E731
    candidates_of = lambda x, y: {"cosine": new().set_weights(dirs), **closed_forms(      # noqa: E731
        Data(None, x, None, None, torch.tensor(y, device=device)), dirs, mode, cfg.ridge, new)}
    return crossfit(sources, embed_texts, data.val.q, candidates_of, seed=cfg.seed, held_out_pairs=held_out)


def write_log(out: Path, history: list[dict]) -> None:
    """train_log.jsonl rewritten from the checkpointed history: it always matches what a resume continues."""
    write_text(out / "train_log.jsonl", "".join(json.dumps(r) + "\n" for r in history))


# ------------------------------------------------------------------------------------------ CLI


PROG = "python -m projector.train"


def parse_args(argv=None, prog: str = PROG) -> TrainConfig:
    """TrainConfig from command-line flags, one per field (``projector.cli.parse``)."""
    return cli.parse(TrainConfig, argv, prog=prog, doc=__doc__)


def main(argv=None, prog: str = PROG) -> int:
    """Run the stage from the command line; the exit code: 0 done, 2 a user error (one line), 130 interrupted."""
    return cli.run(lambda a: train(parse_args(a, prog)), "train", argv)

