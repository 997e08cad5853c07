"""What train checks before any embedding: the settings against each other and against the folder's task
(``check_config``, ``check_task``: an error naming the flag and the allowed values, exit 2). Your files of
queries and labels are read by ``projector.train.supervision``."""
from __future__ import annotations

import logging

from projector.errors import ProjectorError
from projector.formats.pairs import ITEMS, Pairs
from projector.train.labelfit import check_items
from projector.train.projection import ADAPTERS

log = logging.getLogger("projector.train")


def check_task(cfg, pairs: Pairs, mode: str) -> None:
    """Settings that this folder's task cannot use: an error naming the flag, or a warning when harmless."""
    if cfg.query_only and mode != "asymmetric":
        raise ProjectorError("--query-only needs --mode asymmetric (a symmetric model has one W for both sides)")
    if cfg.validation_queries and pairs.task != "qa":
        raise ProjectorError("--validation-queries are real queries with the passages that answer them: they "
                             f"validate task qa; {pairs.path} is task {pairs.task} (its labels validate it)")
    if cfg.keep_llm_train and not (cfg.train_queries or cfg.train_labels):
        raise ProjectorError("--keep-llm-train keeps the folder's train split beside --train-queries or "
                             "--train-labels; without them the folder's train split is what trains anyway: drop it")
    for flag, value in (("--train-labels", cfg.train_labels), ("--validation-labels", cfg.validation_labels),
                        ("--min-llm-confidence", cfg.min_llm_confidence)):
        if value is not None and pairs.layout != ITEMS:
            raise ProjectorError(f"{flag} applies to items (labels under a criterion: generate --judge attribute); "
                                 f"{pairs.path} is task {pairs.task} (for real queries: --train-queries, "
                                 "--validation-queries)")
    if cfg.train_queries and pairs.task != "qa":
        raise ProjectorError("--train-queries are real queries with the passages that answer them: they train "
                             f"task qa; {pairs.path} is task {pairs.task} (train on its labels)")
    if pairs.task == "pairs" and (cfg.hard_negatives or cfg.random_negatives):
        log.warning("--hard-negatives/--random-negatives apply to task qa only; labelled pairs use their labels")
    if pairs.layout != ITEMS:
        return
    if mode != "symmetric":
        raise ProjectorError(f"--mode {mode}: an items folder (generate --judge attribute) trains the symmetric "
                             "model, both sides of a pair are items; drop --mode")
    if cfg.init != "identity":
        raise ProjectorError("--init closed-form applies to qa and pairs; on items the trained map starts from the "
                             "identity and LDA, their closed form, is a candidate of its own")
    if cfg.document_template != cfg.query_template:
        raise ProjectorError("--document-template differs from --query-template: an items folder embeds every item "
                             "with one template (both sides of a pair are items); give both the same or neither")
    check_items(pairs)


def check_config(cfg) -> None:
    """Fail before any embedding work, naming the bad value and the allowed ones."""
    from projector.train.projection import MODES, NORMALIZE

    for name, value, allowed in (("--mode", cfg.mode, (None, *MODES)), ("--normalize", cfg.normalize, NORMALIZE),
                                 ("--init", cfg.init, ("identity", "closed-form")),
                                 ("--adapter", cfg.adapter, ADAPTERS)):
        if value not in allowed:
            raise ProjectorError(f"{name} must be one of {[a for a in allowed if a]}, got {value!r}")
    if cfg.encode_workers is not None and cfg.encode_workers < 1:
        raise ProjectorError(f"--encode-workers must be >= 1, got {cfg.encode_workers}")
    for name, value, low in (("--batch-size", cfg.batch_size, 2), ("--epochs", cfg.epochs, 1),
                             ("--patience", cfg.patience, 1), ("--hard-negatives", cfg.hard_negatives, 0),
                             ("--random-negatives", cfg.random_negatives, 0), ("--val-max-queries", cfg.val_max_queries, 1),
                             ("--calibration-hard-negatives", cfg.calibration_hard_negatives, 0),
                             ("--calibration-random-negatives", cfg.calibration_random_negatives, 0)):
        if value is not None and value < low:  # None: the task's default (fit.LOOP_DEFAULTS)
            raise ProjectorError(f"{name} must be >= {low}, got {value}")
    if not 0 <= cfg.select_confidence < 1:
        raise ProjectorError(f"--select-confidence must be in [0, 1), got {cfg.select_confidence}")
    if cfg.llm_keep is not None and not 0 < cfg.llm_keep <= 1:
        raise ProjectorError(f"--llm-keep must be in (0, 1], got {cfg.llm_keep}")
    if cfg.adapter_rank < 1 or cfg.stay_close < 0:
        raise ProjectorError(f"--adapter-rank must be >= 1 and --stay-close >= 0; got {cfg.adapter_rank}, "
                             f"{cfg.stay_close}")
    if cfg.stay_close and cfg.adapter == "full":
        raise ProjectorError("--stay-close needs --adapter residual or lowrank (the penalty measures from W₀)")
    if cfg.lr is not None and cfg.lr <= 0 or cfg.ridge < 0 or cfg.rank is not None and cfg.rank < 1:
        raise ProjectorError(f"--lr must be > 0, --ridge >= 0 and --rank >= 1; got {cfg.lr}, {cfg.ridge}, {cfg.rank}")
