"""What trains and what validates: every source of supervision named one way, read before any embedding.

A source is examples with a provenance: the pairs folder's rows, which the LLM wrote (qa questions, judged
pairs, item labels; its train split trains, its validation split validates), or a file of yours in their place:
your users' real queries (``--train-queries``, ``--validation-queries``: ``projector.formats.realqueries``) or
items you labelled yourself (``--train-labels``, ``--validation-labels``: ``projector.formats.labels``).

    trains     yours in place of the folder's train split; --keep-llm-train: yours and the folder's
    validates  yours in place of the folder's validation split; with --train-labels alone your labels validate
               too, by repeated half-splits (``projector.train.crossfit``)

``read_supervision(cfg, pairs)`` reads the files (a bad one: one DataError naming file, line and field), warns
where a source that trains also validates (validation then flatters the map), and returns ``Supervision``:
what ``projector.train.data`` embeds and what projector.json records under ``trained_on`` / ``validated_on``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from projector.formats.labels import TrustedLabels
from projector.formats.pairs import ITEMS, PASSAGES, Pairs, read_passages
from projector.formats.realqueries import RealQueries, read_real_queries
from projector.train.crossfit import REPEATS, can_crossfit

log = logging.getLogger("projector.train")


@dataclass
class Source:
    """Examples with a provenance: ``rows`` read from your file, or None for the pairs folder's split."""
    origin: str                                   # "llm" (the pairs folder) or "yours"
    kind: str                                     # "queries" or "labels" (yours); the folder's task (the LLM's)
    path: str                                     # your file, or the pairs folder
    rows: RealQueries | TrustedLabels | None = None

    def describe(self, split: str) -> str:
        """The source as projector.json and the log name it."""
        if self.origin == "llm":
            return f"the pairs folder's {split} split" + (" (labelled by the LLM)" if
                                                         self.kind == ITEMS and split == "validation" else "")
        return f"{'real queries' if self.kind == 'queries' else 'your labels'} ({self.path})"


@dataclass
class Supervision:
    trains: list[Source]                          # yours first, then the folder's train split where it trains
    validates: Source
    crossfit: bool = False                        # your train labels validate too, by half-splits

    def yours(self, kind: str, role: str):
        """Your rows of ``kind`` ("queries" | "labels") that ``role`` ("train" | "validation"), or None."""
        sources = self.trains if role == "train" else [self.validates]
        return next((s.rows for s in sources if s.origin == "yours" and s.kind == kind), None)

    @property
    def from_you(self) -> bool:
        """Whether your examples train (then the log names the source)."""
        return any(s.origin == "yours" for s in self.trains)

    def trained_on(self) -> str:
        return " and ".join(s.describe("train") for s in self.trains)

    def validated_on(self) -> str:
        if self.crossfit:
            return (f"{self.trains[0].describe('train')}, {REPEATS} repeated half-splits: each closed-form candidate "
                    "fitted on one half (and the LLM items it relabels), scored on the other; Platt-calibrated on "
                    "the scored halves' pairs")
        return self.validates.describe("validation")


def read_supervision(cfg, pairs: Pairs) -> Supervision:
    """The run's sources from the flags, each file read and checked against the folder (before any embedding)."""
    items = pairs.layout == ITEMS
    folder, kind = str(pairs.path), ITEMS if items else pairs.task
    if items:
        trusted, trusted_val = read_trusted(cfg, pairs)
        train = Source("yours", "labels", cfg.train_labels, trusted) if trusted is not None else None
        val = Source("yours", "labels", cfg.validation_labels, trusted_val) if trusted_val is not None else None
    else:
        passages = read_passages(Path(cfg.pairs) / PASSAGES) if cfg.validation_queries or cfg.train_queries else None
        real = read_real_queries(cfg.validation_queries, passages) if cfg.validation_queries else None
        real_train = read_real_queries(cfg.train_queries, passages) if cfg.train_queries else None
        train = Source("yours", "queries", cfg.train_queries, real_train) if real_train is not None else None
        val = Source("yours", "queries", cfg.validation_queries, real) if real is not None else None
    llm_train = Source("llm", kind, folder)
    trains = [llm_train] if train is None else [train, llm_train] if cfg.keep_llm_train else [train]
    sup = Supervision(trains, val or Source("llm", kind, folder))
    if not items and val is not None:
        _warn_query_overlap(sup, pairs)
    if items and train is not None and val is None:  # your labels validate too, where half-splits can score
        sup.crossfit = can_crossfit(train.rows.labels)
        if not sup.crossfit:
            log.warning("WARNING: --train-labels has no class of 4 or more items: too few to validate on by "
                        "half-splits; validating on the folder's validation split (the LLM's labels, with their "
                        "biases). Label more items or pass --validation-labels")
    return sup


def _warn_query_overlap(sup: Supervision, pairs: Pairs) -> None:
    """Real validation queries that also train (yours, or the LLM's questions) flatter validation: say so."""
    sources = {}  # train query text -> where it comes from
    for s in sup.trains:
        texts = s.rows.queries if s.rows is not None else [" ".join(q.split()) for q in pairs.splits["train"]["query"]]
        sources |= {q: s.path for q in texts}
    real = sup.validates.rows
    if same := [sources[q] for q in real.queries if q in sources]:
        log.warning("%d of the %d --validation-queries are also train queries of %s: validation then flatters "
                    "the map; hold them out", len(same), len(real), " and ".join(sorted(set(same))))


def read_trusted(cfg, pairs: Pairs):
    """--train-labels and --validation-labels read and checked against the items folder (before any embedding),
    and the overlaps that would flatter validation warned about."""
    from projector.formats.labels import read_trusted_labels

    items = {i: {"text": t, "split": s} for s, cols in pairs.splits.items() for i, t in zip(cols["id"], cols["text"])}
    names = (pairs.manifest.get("labels") or {}).get("names")
    trusted = read_trusted_labels(cfg.train_labels, items, names, "train") if cfg.train_labels else None
    trusted_val = read_trusted_labels(cfg.validation_labels, items, names, "validation") if cfg.validation_labels else None
    if trusted is not None:
        val_ids = set(trusted_val.ids) if trusted_val is not None else set(pairs.splits["validation"]["id"])
        if same := [i for i in trusted.ids if i in val_ids]:
            log.warning("%d of the %d --train-labels items are also validation items of this run (%s): validation "
                        "then flatters the map; hold them out", len(same), len(trusted),
                        cfg.validation_labels or f"{pairs.path}'s validation split")
    return trusted, trusted_val
