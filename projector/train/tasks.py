"""The training tasks, one entry each in ``TASKS``, keyed by the pairs folder's layout: what its rows are,
the model they train by default, the validation metric, how the train and validation sides are
embedded (with the user's sources in place of the folder's: ``projector.train.supervision``) and the test
split reported beside them. ``projector.train.stage`` reads its task here instead of branching on it.

  qa     (query, passage) rows: asymmetric W_q / W_a, in-batch negatives over every pair (plus mined or
         judged hard negatives), validation NDCG@10 ranking the whole corpus
  pairs  (text_a, text_b, label) rows: symmetric W, the labels row by row, validation NDCG@10 of each text_a
         with a positive ranking the distinct text_b
  items  (item, label) rows (generate --judge attribute): symmetric W, every in-batch pair of items similar
         when their labels agree, validation label mAP (each item a query over the others)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from projector.formats.pairs import ITEMS, Pairs
from projector.train.data import (check_finite, embed_items, embed_pairs, item_split_of, retrieval_split)
from projector.train.inputs import METRICS, Data, Split
from projector.train.labelfit import scoreable


@dataclass(frozen=True)
class TrainTask:
    name: str                 # the pairs folder's layout: qa, pairs or items
    mode: str                 # --mode when not given
    metric: str               # what early stopping and selection maximise (projector.train.fit.validate's key)
    ranks_corpus: bool        # a query ranks a corpus (passages, text_b): the folded query map applies
    embed: Callable           # (pairs, cfg, device, supervision) -> Data, train side and data.val
    test_split: Callable      # (pairs, cfg, data, device) -> Split | None (None: no usable test rows)


def _embed_retrieval(pairs: Pairs, cfg, device, sup) -> Data:
    return embed_pairs(pairs, cfg, device, sup.yours("queries", "validation"), sup.yours("queries", "train"))


def _embed_items(pairs: Pairs, cfg, device, sup) -> Data:
    return embed_items(pairs, cfg, device, sup.yours("labels", "train"), sup.yours("labels", "validation"))


def _retrieval_test(pairs: Pairs, cfg, data: Data, device) -> Split | None:
    split = retrieval_split(pairs, "test", cfg, data.corpus, device)
    check_finite({"test queries": split.q, "test text_b": split.pairs[1] if split.pairs else None})
    return split if len(split.q) else None


def _items_test(pairs: Pairs, cfg, data: Data, device) -> Split | None:
    if not scoreable(pairs.splits["test"]["label"]):
        return None
    split = item_split_of(pairs, "test", cfg, device)
    check_finite({"test items": split.q})
    return split


TASKS = {
    # the loss of each (the pairs the sigmoid log-loss sees) is projector.train.batch's, by the data's kind
    "qa": TrainTask("qa", "asymmetric", METRICS["qa"], True, _embed_retrieval, _retrieval_test),
    "pairs": TrainTask("pairs", "symmetric", METRICS["pairs"], True, _embed_retrieval, _retrieval_test),
    ITEMS: TrainTask(ITEMS, "symmetric", METRICS[ITEMS], False, _embed_items, _items_test),
}


def task_of(pairs: Pairs) -> TrainTask:
    """The task of a pairs folder: its layout (qa, pairs or items)."""
    return TASKS[pairs.layout]
