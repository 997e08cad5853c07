"""Validation on the few labels you have: repeated half-splits of them, every closed-form candidate refitted.

With ``--train-labels`` and no ``--validation-labels`` (40 labels, say, and nothing held out), the folder's
validation split is no judge: the LLM labelled it, with the same biases as its train split (a map from its
labels ranked 22% below cosine on held-out items while validation on its own labels said +0.106). So your
labels validate too. Each repeat splits them in two halves, class by class: everything that trains (your
labels of one half, and the LLM's items as ``projector.train.data.ItemSources`` builds them from that half,
relabelled by a label model fitted on it) fits each closed-form candidate, and the other half scores it
(label mAP: each item a query over the others of its half). Every item gets one average precision per repeat
and candidate; the paired differences against cosine feed the same noise gate as a validation split
(``projector.train.candidates.gate``). Each candidate is fitted on half the labels here and on all of them for
export, so the gain is measured low, never flattered: cosine is kept wherever half your labels cannot show a
gain. The trained (gradient) candidates are left out: refitting them per repeat costs minutes, and on a few
dozen labels the closed forms are what win (measured on debian-pkgs).
"""
from __future__ import annotations

import numpy as np
import torch

from projector.train.fit import query_scores
from projector.train.labelfit import item_split, label_ids

REPEATS = 5  # half-splits; 5 x (m/2) average precisions per candidate


def can_crossfit(labels: list[str]) -> bool:
    """Whether half-splits can score anything: some class has >= 4 labelled items (2 on each side)."""
    values, counts = np.unique(np.asarray(labels, dtype=object), return_counts=True)
    return bool((counts >= 4).any())


def half_splits(labels: list[str], repeats: int = REPEATS, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``repeats`` (fit rows, score rows) pairs: each class split in two halves (seeded), a class of one item
    always on the fitting side (it can be scored against nothing)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=object)
    out = []
    for _ in range(repeats):
        fit_rows, score_rows = [], []
        for c in sorted(set(labels)):
            rows = rng.permutation(np.flatnonzero(labels == c))
            half = len(rows) // 2
            fit_rows += list(rows[half:]) if len(rows) > 1 else list(rows)
            score_rows += list(rows[:half]) if len(rows) > 1 else []
        out.append((np.sort(fit_rows), np.sort(score_rows)))
    return out


def crossfit(sources, embed_texts, x_yours: torch.Tensor, candidates_of, repeats: int = REPEATS, seed: int = 0,
             held_out_pairs: dict | None = None) -> dict[str, np.ndarray]:
    """Per candidate, the average precision of every scored item over all repeats (the same items in the same
    order for every candidate, so differences are paired). ``held_out_pairs``, when given, is filled with each
    candidate's (raw scores, labels) of the scored halves' implied pairs: out-of-fold pairs for its Platt fit
    (in-sample, a map fitted on 40 labels separates them perfectly and its probabilities say 0 or 1).

    ``sources``: ``ItemSources`` (``training_set(rows)``); ``embed_texts(texts)`` -> (n, d) tensor; ``x_yours``:
    your labelled items embedded (m, d); ``candidates_of(x, labels)`` -> {name: Projection}, cosine first."""
    labels = list(sources.trusted.labels)
    scores: dict[str, list[np.ndarray]] = {}
    for fit_rows, score_rows in half_splits(labels, repeats, seed):
        texts, train_labels = sources.training_set(fit_rows)
        x = embed_texts(texts)                                                          # (n, d)
        ids = label_ids(train_labels)
        split = item_split(x_yours[torch.as_tensor(score_rows)], [labels[i] for i in score_rows], ids, seed=seed)
        for name, model in candidates_of(x, [ids[v] for v in train_labels]).items():
            scores.setdefault(name, []).append(query_scores(model, split))
            if held_out_pairs is not None and split.pairs is not None:
                a, b, y = split.pairs
                with torch.no_grad():
                    raw = (model.project_queries(a) * model.project_documents(b)).sum(-1)        # (n,)
                got = held_out_pairs.setdefault(name, ([], []))
                got[0].append(raw.cpu())
                got[1].append(y.cpu())
    if held_out_pairs is not None:
        for name, (raw, y) in list(held_out_pairs.items()):
            held_out_pairs[name] = (torch.cat(raw), torch.cat(y))
    return {name: np.concatenate(parts) for name, parts in scores.items()}
