"""The training loop's inputs: the embedded train split (``Data``) and a split as a ranking problem (``Split``),
tensors on the training device, and the content key a checkpoint is resumed by (``data_fingerprint``).

Three kinds of data (``Data.kind``): "qa" (queries and their positive passages), "pairs" (aligned labelled
pairs) and "items" (labelled items, ``--judge attribute``). ``projector.train`` embeds a pairs folder into
them (``projector.train.labelfit`` an items folder); ``projector.train.fit`` runs the loop on them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

# The validation metric of each kind of data: what early stopping and candidate selection maximise
# (``projector.train.fit.validate``'s keys; ``projector.train.tasks`` names it per task).
METRICS = {"qa": "val_ndcg@10", "pairs": "val_ndcg@10", "items": "val_map"}

@dataclass
class Split:
    """A split as a ranking problem: each query ranks every doc; ``relevant`` says which are right.

    qa: ``pos`` is each query's positive (its row in ``docs``, the corpus); labelled pairs: ``pairs`` holds the
    split's aligned rows and labels, which the loss and the calibration use instead of the ranking. Items:
    ``labels`` holds each item's label id, every item is a query over the others (``docs`` is ``q``) and
    ``pairs`` holds pairs of items with agreement labels, for the calibration.
    """

    q: torch.Tensor  # (m, d) queries / text_a that have a positive / items
    docs: torch.Tensor  # (N, d) the corpus / distinct text_b / the items again
    relevant: list[set[int]]  # per query: rows of docs that are relevant (items: unused, labels say it)
    pos: torch.Tensor | None = None  # (m,) qa: row of each query's positive in docs
    pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # pairs: (a (n, d), b (n, d), y (n,))
    labels: torch.Tensor | None = None  # (m,) items: label id of each item (known labels only)


@dataclass
class Data:
    """Embedded inputs as tensors on the training device. qa: queries + index of the positive passage into
    the corpus; pairs: aligned a/b rows with labels; items: the items with their label ids (no ``b``).
    ``val`` is the validation split."""

    corpus: torch.Tensor | None  # (n_passages, d)  qa only
    q: torch.Tensor  # (n, d) train queries / text_a / items
    pos: torch.Tensor | None  # (n,) qa: corpus index of each query's positive
    b: torch.Tensor | None  # (n, d) pairs: text_b
    y: torch.Tensor | None  # (n,) pairs: labels 0/1; items: label ids 0..C-1 (-1 unknown: in no pair)
    val: Split | None = None
    negatives: torch.Tensor | None = None  # (n, m) qa: corpus indices of judged hard negatives (-1 pads), teach's
    notes: dict = field(default_factory=dict)  # what the data builders did (projector.train.data), for projector.json

    @property
    def kind(self) -> str:
        """"qa", "pairs" or "items", read off which tensors are present."""
        return "qa" if self.pos is not None else "pairs" if self.b is not None else "items"


def data_fingerprint(data: Data) -> str:
    """Content key of the training inputs (train tensors and validation labels): a checkpoint made on other data
    (a pairs folder that grew, another --max-items) is never resumed."""
    h = hashlib.sha256()
    v = data.val
    # the validation split too: it decides the best epoch, so a checkpoint whose "best" was measured on other
    # validation queries (a generate folder that grew keeps its first N train pairs) must not be resumed
    val = () if v is None else (v.q, v.docs, v.pos, v.labels, *(v.pairs or ()))
    for t in (data.corpus, data.q, data.pos, data.b, data.y, data.negatives, *val):
        if t is not None:
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]

