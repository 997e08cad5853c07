"""The pairwise judge (``generate --task pairs``, ``--judge pairwise``): candidate pairs of items -- nearest
neighbours under the frozen encoder (likely positives) and random partners (likely negatives), within each split
so that no item is shared by two splits -- each judged by the LLM "similar in the sense of CRITERION?"; rows:
text_a, text_b, id_a, id_b, label, reason. The ``pairwise`` entry of ``projector.generate.tasks``.
"""
from __future__ import annotations

import random

from projector.formats import pairs as pairs_format
from projector.generate import sampling
from projector.llm.client import Judgement, load_prompt
from projector.llm.records import Job, finished


class PairwiseTask:
    """One request per candidate pair (``projector.generate.tasks``)."""

    name, layout, progress, logprobs = "pairwise", "pairs", "judging", False

    def __init__(self, cfg, out):
        self.cfg = cfg
        self.prompt = load_prompt("pairs", cfg.prompt_file)

    def prepare(self, passages, split_of) -> None:
        pass

    def resume_identity(self) -> dict:
        return {}

    def jobs(self, llm, passages, split_of, done, records) -> list[Job]:
        cfg, by_id = self.cfg, {p.passage_id: p for p in passages}
        return [Job(f"pair:{a}|{b}", {"id_a": a, "id_b": b},
                    self.prompt.render(text_a=by_id[a].text, text_b=by_id[b].text, criterion=cfg.criterion),
                    Judgement, None) for a, b in candidate_pairs(passages, split_of, cfg)]

    def rows(self, jobs, done, passages, split_of) -> tuple[list[dict], int]:
        by_id = {p.passage_id: p for p in passages}
        ok, failed = finished(jobs, done)
        rows = []
        for rec in ok:
            a, b = by_id[rec["id_a"]], by_id[rec["id_b"]]
            rows.append(pairs_format.pair_row(a, b, rec["result"]["similar"], rec["result"].get("reason", ""),
                                              split_of[a.passage_id]))
        return rows, failed

    def manifest(self, manifest, rows, jobs, done) -> None:
        manifest["counts"]["positives"] = sum(r["label"] for r in rows)

    def report(self, manifest, rows) -> list[str]:
        return []

    def check(self, manifest, rows) -> None:
        pass


def candidate_pairs(passages, split_of: dict, cfg) -> list[tuple[str, str]]:
    """(id_a, id_b) sorted within each pair, each pair once: per anchor of a seeded sample of --max-items, its
    --neighbours nearest items and --random-pairs random ones, within the anchor's split only."""
    import numpy as np

    from projector.embed.embedding import embed

    by_id = {p.passage_id: p for p in passages}
    emb = embed([p.text for p in passages], cfg.encoder)  # (n, d), normalised
    index = {p.passage_id: i for i, p in enumerate(passages)}
    rng = random.Random(cfg.seed)
    pairs: list[tuple[str, str]] = []
    seen = set()
    for split in ("train", "validation", "test"):
        ids = [p.passage_id for p in passages if split_of[p.passage_id] == split]
        if len(ids) < 2:
            continue
        sub = emb[[index[i] for i in ids]]  # (m, d)
        sims = sub @ sub.T  # (m, m)
        np.fill_diagonal(sims, -np.inf)
        anchors = sampling.uniform([by_id[i] for i in ids], cfg.max_items, cfg.seed)
        position = {pid: i for i, pid in enumerate(ids)}
        for a in anchors:
            ai = position[a.passage_id]
            partners = [ids[j] for j in np.argsort(-sims[ai])[: cfg.neighbours]]
            partners += rng.sample([i for i in ids if i != a.passage_id], min(cfg.random_pairs, len(ids) - 1))
            for b in partners:
                key = tuple(sorted((a.passage_id, b)))
                if key not in seen:
                    seen.add(key)
                    pairs.append(key)
    return pairs
