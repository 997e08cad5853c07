"""Round-trip filter of an LLM pairs folder by the frozen encoder (issue 11, piece 2 without the LLM).

    python benchmarks/roundtrip_filter.py benchmarks/pairs/nq-wiki-v3 runs/rt --max-rank 3,10

Promptagator keeps a synthetic query only if a retriever finds its own passage again. Here the retriever is
the frozen encoder's cosine, among the folder's own passages (``passages.jsonl``: every passage of the corpus
the LLM was given, not only those it was asked about): a train question whose passage ranks below
``--max-rank`` is dropped. For each K it writes ``OUT/<folder>-rtK``, a copy of the folder whose train split
keeps only those questions (validation and test untouched, the manifest says what was filtered), for
``learning_curve.py run --llm-pairs``. No LLM call; the encoder's embedding cache is shared.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from query_difficulty import ranks  # noqa: E402
from projector.formats import pairs as P  # noqa: E402
from projector.embed.embedding import embed  # noqa: E402


def own_ranks(folder: Path, rows: list[dict]) -> np.ndarray:
    """(m,) the rank of each train row's own passage among the folder's passages, by frozen cosine, in the
    order of ``rows`` (``projector.formats.pairs.read_rows(folder)``)."""
    passages = P.read_passages(folder / P.PASSAGES)
    row_of = {p.passage_id: i for i, p in enumerate(passages)}
    train = [r for r in rows if r["split"] == "train"]
    corpus = embed([p.text for p in passages], None, show_progress=False)                 # (N, d)
    return ranks([r["query"] for r in train], [{row_of[str(r["passage_id"])]} for r in train], corpus)


def write_filtered(folder: Path, out: Path, rows: list[dict], rank: np.ndarray, max_rank: int) -> int:
    """``out``: ``folder`` (its ``rows``) with the train questions ranked past ``max_rank`` left out; returns how
    many are kept."""
    manifest = P.read_manifest(folder)
    manifest["roundtrip_filter"] = {"source": folder.name, "max_rank": max_rank,
                                    "among": "the folder's passages, frozen cosine"}
    keep = iter(rank <= max_rank)  # train rows in the order own_ranks ranked them
    shutil.rmtree(out, ignore_errors=True)
    P.write_copy(folder, out, [r for r in rows if r["split"] != "train" or next(keep)], manifest)
    return int((rank <= max_rank).sum())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path, help="a projector generate folder (task qa)")
    ap.add_argument("out", type=Path, help="where the filtered copies go")
    ap.add_argument("--max-rank", default="3,10", help="comma-separated K: keep questions whose passage ranks <= K")
    a = ap.parse_args(argv)
    rows = P.read_rows(a.folder)  # read once: ranked, then copied
    rank = own_ranks(a.folder, rows)
    print(f"{a.folder.name}: {len(rank)} train questions; own passage 1st {np.mean(rank == 1):.1%}, in top 3 "
          f"{np.mean(rank <= 3):.1%}, in top 10 {np.mean(rank <= 10):.1%}, median rank {np.median(rank):.0f}")
    for k in (int(x) for x in a.max_rank.split(",")):
        out = a.out / f"{a.folder.name}-rt{k}"
        print(f"{out}: {write_filtered(a.folder, out, rows, rank, k)} of {len(rank)} train questions kept (rank <= {k})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
