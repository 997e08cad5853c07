"""The training data: every source of supervision, embedded, as ``projector.train.fit``'s ``Data`` and ``Split``.

Sources, each with its provenance (the run's projector.json names what trained and what validated):
  - the pairs folder's LLM-written rows: qa questions (with the hard negatives ``projector teach`` judged),
    judged pairs, or item labels (``generate --judge attribute``), split train / validation / test;
  - your users' real queries (``--train-queries``, ``--validation-queries``: ``projector.formats.realqueries``);
  - items you labelled yourself (``--train-labels``, ``--validation-labels``: ``projector.formats.labels``).
What trains is the folder's train split, or the user's file in its place (``--keep-llm-train``: beside it);
what validates is the folder's validation split, or the user's file in its place. Embeddings go through the
content-keyed cache (``projector.embed``): a second run embeds nothing.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from projector.embed.embedding import embed
from projector.errors import DataError
from projector.formats.labels import TrustedLabels
from projector.formats.pairs import UNKNOWN, Pairs
from projector.formats.realqueries import RealQueries
from projector.train.inputs import Data, Split
from projector.train.labelfit import item_data, item_split, known_items, label_ids

def embedder(cfg):
    """embed() as this run uses it: cached; with --mmap-embeddings each array streams to OUT/embeddings/NAME.npy
    and comes back memory-mapped (on CPU the tensors stay backed by those files, so pairs sets larger than RAM
    train; every torchrun rank maps the same files)."""
    def e(texts, template, name: str) -> torch.Tensor:
        out = Path(cfg.out) / "embeddings" / f"{name}.npy" if cfg.mmap_embeddings else None
        return torch.from_numpy(embed(texts, cfg.encoder, template=template, cache_dir=cfg.cache_dir, out=out))
    return e


def embed_pairs(pairs: Pairs, cfg, device: torch.device, real: RealQueries | None = None,
                real_train: RealQueries | None = None) -> Data:
    """The train split (qa: ``real_train``, the user's real queries, in its place: one training pair per query and
    passage that answers it) and the validation split (``real`` in its place) embedded on ``device``."""
    e = embedder(cfg)
    tr = pairs.splits["train"]
    if pairs.task == "qa":
        corpus = e(pairs.passage_texts, cfg.document_template, "corpus")                      # (N, d)
        index = {pid: i for i, pid in enumerate(pairs.passage_ids)}
        queries, positives = [], []
        if real_train is not None:  # row indices of the folder's passages, as read_real_queries resolved them
            queries = [q for q, rel in zip(real_train.queries, real_train.relevant) for _ in rel]
            positives = [r for rel in real_train.relevant for r in sorted(rel)]
        if real_train is None or cfg.keep_llm_train:
            queries, positives = queries + list(tr["query"]), positives + [index[str(p)] for p in tr["passage_id"]]
        data = Data(corpus.to(device), e(queries, cfg.query_template, "train-query").to(device),
                    torch.tensor(positives, device=device), None, None)
        if (real_train is None or cfg.keep_llm_train) and cfg.judged_negatives and any(tr.get("negatives") or []):
            # they belong to the folder's rows, which come last: the real queries' rows get none (-1)
            judged = negatives_index(tr["negatives"], index)
            none = torch.full((len(queries) - len(judged), judged.shape[1]), -1, dtype=torch.long)
            data.negatives = torch.cat([none, judged]).to(device)
    else:
        data = Data(None, e(tr["text_a"], cfg.query_template, "train-a").to(device), None,
                    e(tr["text_b"], cfg.document_template, "train-b").to(device),
                    torch.tensor(tr["label"], device=device))
    data.val = (real_split(real, cfg, data.corpus, device) if real is not None else
                retrieval_split(pairs, "validation", cfg, data.corpus, device))
    sides = {"train queries": data.q, "validation queries": data.val.q, "corpus passages": data.corpus,
             "train text_b": data.b}
    if data.val.pairs is not None:
        sides["validation text_b"] = data.val.pairs[1]
    check_finite(sides)
    return data


def negatives_index(negatives: list[list[str]], index: dict[str, int]) -> torch.Tensor:
    """The ``negatives`` column (passage ids per row) as (n, m) corpus indices, -1 where a row has fewer."""
    m = max(len(v) for v in negatives)
    out = torch.full((len(negatives), m), -1, dtype=torch.long)
    for i, v in enumerate(negatives):
        out[i, :len(v)] = torch.tensor([index[str(p)] for p in v], dtype=torch.long)
    return out


def check_finite(sides: dict) -> None:
    """{name: (n, d) tensor or None}: a DataError naming the side and the first bad rows."""
    for name, t in sides.items():
        if t is not None and not torch.isfinite(t).all():
            rows = (~torch.isfinite(t).all(dim=1)).nonzero().flatten()[:5].tolist()
            raise DataError(f"{name}: embeddings of rows {rows} contain NaN/inf; check those texts and --encoder")


def retrieval_split(pairs: Pairs, split: str, cfg, corpus: torch.Tensor | None, device) -> Split:
    """A split embedded as a ranking problem (``projector.train.fit.Split``) on ``device``.

    qa: up to ``val_max_queries`` seeded queries ranked against the whole corpus; pairs: see _pairs_retrieval.
    """
    e = embedder(cfg)
    cols = pairs.splits[split]
    if pairs.task == "qa":
        index = {pid: i for i, pid in enumerate(pairs.passage_ids)}
        keep = np.sort(np.random.default_rng(cfg.seed).permutation(len(cols["query"]))[:cfg.val_max_queries])
        pos = [index[str(cols["passage_id"][i])] for i in keep]
        return Split(e([cols["query"][i] for i in keep], cfg.query_template, f"{split}-query").to(device),
                     corpus, [{p} for p in pos], pos=torch.tensor(pos, device=device))
    a, b = e(cols["text_a"], cfg.query_template, f"{split}-a"), e(cols["text_b"], cfg.document_template, f"{split}-b")
    q, docs, relevant = _pairs_retrieval(cols, a, b)
    return Split(q.to(device), docs.to(device), relevant,
                 pairs=(a.to(device), b.to(device), torch.tensor(cols["label"], device=device)))


def real_split(real: RealQueries, cfg, corpus: torch.Tensor, device) -> Split:
    """``--validation-queries``: the user's real queries (``projector.formats.realqueries``) ranked against the folder's
    corpus, up to ``val_max_queries`` of them (seeded), in place of the validation split the LLM wrote."""
    keep = np.sort(np.random.default_rng(cfg.seed).permutation(len(real))[:cfg.val_max_queries])
    q = embedder(cfg)([real.queries[i] for i in keep], cfg.query_template, "real-validation-query")
    return Split(q.to(device), corpus, [real.relevant[i] for i in keep],
                 pos=torch.tensor([real.positives[i] for i in keep], device=device))


def _pairs_retrieval(cols: dict, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Labelled pairs as a ranking problem: each text_a with a positive ranks every distinct text_b.
    Returns (q (m, d), docs (N, d), relevant)."""
    docs, doc_index, first_a, relevant = [], {}, {}, {}  # docs: first row of each distinct id_b
    for i, (ia, ib, y) in enumerate(zip(cols["id_a"], cols["id_b"], cols["label"])):
        if ib not in doc_index:
            doc_index[ib] = len(docs)
            docs.append(i)
        first_a.setdefault(ia, i)
        if y == 1:
            relevant.setdefault(ia, set()).add(doc_index[ib])
    qs = sorted(relevant, key=lambda x: first_a[x])
    return a[[first_a[x] for x in qs]], b[docs], [relevant[x] for x in qs]


def embed_items(pairs: Pairs, cfg, device: torch.device, trusted: TrustedLabels | None = None,
                trusted_val: TrustedLabels | None = None) -> Data:
    """An items folder as ``Data``: the train items with known labels (an unknown one is in no pair, so it is
    not embedded) and the validation items as a ``Split`` (``projector.train.labelfit``).

    ``trusted`` (``--train-labels``) trains in place of the folder's LLM labels, or beside them with
    ``--keep-llm-train`` (see ``ItemSources``). ``trusted_val`` (``--validation-labels``) validates in place of
    the folder's validation split; with ``--train-labels`` alone, your labels validate too, by repeated
    half-splits (``projector.train.crossfit``), and ``data.val`` holds them for the calibration."""
    sources = ItemSources(pairs, cfg, trusted, held_out=set(trusted_val.ids) if trusted_val is not None else set())
    texts, labels = sources.training_set()
    x = embedder(cfg)(texts, cfg.query_template, "train-items").to(device)                 # (n, d)
    data = item_data(x, labels, label_ids(labels))
    data.notes = {"sources": sources} | sources.notes
    if trusted_val is not None or trusted is not None:
        judged = trusted_val if trusted_val is not None else trusted
        xv = embedder(cfg)(judged.texts, cfg.query_template, "trusted-items").to(device)    # (m, d)
        data.val = item_split(xv, judged.labels, label_ids(labels), seed=cfg.seed)
    else:
        data.val = item_split_of(pairs, "validation", cfg, device, label_ids(labels))
    check_finite({"train items": data.q, "validation items": data.val.q})
    return data


# The fractions of the LLM's items that train when it labelled with probabilities, most confident first.
# Measured on debian-pkgs interface (600 items, test mAP, LDA beside cosine; cosine 0.505): alone, its 30% most
# confident labels (right 93% of the time) gave 0.584, half 0.557, all 0.478; relabelled beside 40 of your
# labels, half gave the best (docs/criterion.md). A guide, not a guarantee: where the LLM cannot apply the
# criterion at all (section: right 6%), no fraction helps, and only labels you trust can show it.
ALONE_KEEP = 0.3
RELABELLED_KEEP = 0.5


class ItemSources:
    """What trains on an items folder: your labels (``--train-labels``), the LLM's (the folder's train split),
    or both. Both: by default the LLM's items are relabelled by a label model fitted on your labels and the
    most confident ``--llm-keep`` of them train beside yours (``projector.train.labelmodel``); with
    ``--no-relabel-llm`` the LLM's own labels do (``--min-llm-confidence`` filters them). ``training_set(rows)``
    builds the set from a subset of your labels (rows), so that a validation on your labels can leave some out
    and refit everything else the same way (``projector.train.crossfit``)."""

    def __init__(self, pairs: Pairs, cfg, trusted: TrustedLabels | None, held_out: set = frozenset()):
        self.trusted, self.cfg, self.notes = trusted, cfg, {}
        # your items never train with the LLM's label: yours replace it, and a validation item (``held_out``:
        # --validation-labels) trained on under the LLM's label would flatter the validation
        exclude = (set(trusted.ids) if trusted is not None else set()) | set(held_out)
        self.mode = ("llm" if trusted is None else "yours" if not cfg.keep_llm_train else
                     "yours+relabelled-llm" if cfg.relabel_llm else "yours+llm")
        self.llm_texts, self.llm_labels = llm_train_items(pairs, cfg, exclude, keep_unknown=self.mode.endswith(
            "relabelled-llm"), alone=self.mode == "llm")
        if self.mode == "yours+relabelled-llm":
            self._prepare_relabel(pairs, exclude)
        elif self.mode == "llm" and pairs.splits["train"].get("confidence") is not None:
            self.notes = {"llm_items_kept": {"items": len(self.llm_texts), "fraction": cfg.llm_keep or ALONE_KEEP,
                                             "by": "the LLM's probability of its label, most confident first"}
                          if cfg.min_llm_confidence is None else {"items": len(self.llm_texts)}}

    def _prepare_relabel(self, pairs: Pairs, exclude: set) -> None:
        from projector.train.labelmodel import distributions

        cols, cfg, e = pairs.splits["train"], self.cfg, embedder(self.cfg)
        rows = [i for i, item_id in enumerate(cols["id"]) if item_id not in exclude]
        dists = [d for d in cols.get("distribution") or [] if d]
        names = ((pairs.manifest.get("labels") or {}).get("names") or (list(json.loads(dists[0])) if dists else None)
                 or sorted(set(cols["label"]) - {UNKNOWN}))  # the LLM's label set, its distributions' columns
        none = [None] * len(cols["id"])
        judged = {i: (label, dist) for s in pairs.splits.values()
                  for i, label, dist in zip(s["id"], s["label"], s.get("distribution") or [None] * len(s["id"]))}
        self.x_llm = e(self.llm_texts, cfg.query_template, "train-items").cpu().numpy()           # (n, d)
        self.dist_llm = distributions([cols["label"][i] for i in rows],
                                      [(cols.get("distribution") or none)[i] for i in rows], names)  # (n, C)
        self.x_yours = e(self.trusted.texts, cfg.query_template, "trusted-items").cpu().numpy()   # (m, d)
        self.dist_yours = distributions([judged.get(i, (None, None))[0] for i in self.trusted.ids],
                                        [judged.get(i, (None, None))[1] for i in self.trusted.ids], names)

    def training_set(self, rows=None) -> tuple[list[str], list[str]]:
        """(texts, labels) that train, from your labels' ``rows`` (None: all of them)."""
        t = self.trusted
        if t is None:
            return list(self.llm_texts), list(self.llm_labels)
        rows = list(range(len(t))) if rows is None else list(rows)
        texts, labels = [t.texts[i] for i in rows], [t.labels[i] for i in rows]
        if self.mode == "yours":
            return texts, labels
        if self.mode == "yours+llm":
            return texts + self.llm_texts, labels + self.llm_labels
        from projector.train.labelmodel import relabel

        r = relabel(self.x_llm, self.dist_llm, self.x_yours[rows], self.dist_yours[rows], labels,
                    keep=self.cfg.llm_keep or RELABELLED_KEEP, seed=self.cfg.seed)
        kept = np.flatnonzero(r.kept)
        if len(rows) == len(t):  # the run's own set: say what the label model did
            self.notes = {"relabelled_llm_items": {"items": len(r.labels), "kept": int(len(kept)),
                                                   "features": r.features,
                                                   "lowest_kept_confidence": round(float(r.confidence[kept].min()), 4)
                                                   if len(kept) else None}}
        return texts + [self.llm_texts[k] for k in kept], labels + [r.labels[k] for k in kept]


def llm_train_items(pairs: Pairs, cfg, exclude: set = frozenset(), keep_unknown: bool = False,
                    alone: bool = False) -> tuple[list[str], list[str]]:
    """(texts, labels) of the folder's train items with a known label (``keep_unknown``: all, for a label
    model to relabel), less ``exclude`` (ids) and, with ``--min-llm-confidence``, less those whose label the
    LLM gave a lower probability (a folder labelled without log-probabilities has no ``confidence`` column:
    every item stays). ``alone`` (the LLM's labels are all that train) and probabilities recorded, without
    ``--min-llm-confidence``: the ``--llm-keep`` most confident fraction (default ``ALONE_KEEP``)."""
    cols = pairs.splits["train"]
    conf = cols.get("confidence")
    floor = None if keep_unknown else getattr(cfg, "min_llm_confidence", None)
    keep = [i for i, (item_id, label) in enumerate(zip(cols["id"], cols["label"]))
            if (keep_unknown or label != UNKNOWN) and item_id not in exclude
            and (floor is None or conf is None or conf[i] is None or conf[i] >= floor)]
    if alone and floor is None and conf is not None and all(conf[i] is not None for i in keep):
        fraction = getattr(cfg, "llm_keep", None) or ALONE_KEEP
        keep = sorted(sorted(keep, key=lambda i: -conf[i])[:max(1, round(fraction * len(keep)))])
    return [cols["text"][i] for i in keep], [cols["label"][i] for i in keep]


def item_split_of(pairs: Pairs, split: str, cfg, device, ids: dict[str, int] | None = None) -> Split:
    """One split's items with known labels, embedded, as a ``Split`` (label ids ``ids``, by default the train
    split's)."""
    texts, labels = known_items(pairs.splits[split])
    x = embedder(cfg)(texts, cfg.query_template, f"{split}-items").to(device)              # (m, d)
    return item_split(x, labels, ids if ids is not None else label_ids(pairs.splits["train"]["label"]), seed=cfg.seed)
