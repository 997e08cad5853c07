"""How hard are training queries for frozen cosine? LLM-made vs real, on the learning curve's train half.

    python benchmarks/query_difficulty.py debdesc benchmarks/pairs/debdesc-v2 benchmarks/pairs/debdesc-v3
    python benchmarks/query_difficulty.py nq-wiki benchmarks/pairs/nq-wiki-v2 --out benchmarks/results/query-difficulty-nq-wiki.md

For each query its passage's rank among the set's whole corpus under the frozen encoder's cosine (the rank of
the best relevant passage; 1 = cosine already finds it). A query cosine ranks first teaches a map little it
does not know; one it ranks far down is either hard or does not match its passage. Rows: the real train-half
queries (``learning_curve_split.split_set``'s train half, the first ``--real`` of them) and each LLM folder's train
split, the rows whose passage is in the corpus. Reads the shared embedding cache (``projector.embed``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from siblings import load  # noqa: E402  (benchmarks/ is not a package)
from projector.embed.embedding import embed  # noqa: E402
from projector.files import write_text  # noqa: E402
from projector.formats.pairs import load_pairs  # noqa: E402


def ranks(queries: list[str], relevant: list[set[int]], corpus_emb: np.ndarray) -> np.ndarray:
    """(m,) the 1-based rank of each query's best relevant passage under frozen cosine."""
    q = embed(queries, None, show_progress=False)                                       # (m, d), unit rows
    out = []
    for i in range(0, len(q), 512):
        s = q[i:i + 512] @ corpus_emb.T                                                 # (c, N)
        best = np.array([s[j, sorted(relevant[i + j])].max() for j in range(len(s))])
        out.append((s > best[:, None]).sum(axis=1) + 1)
    return np.concatenate(out) if out else np.zeros(0, dtype=int)


def row(label: str, queries: list[str], r: np.ndarray) -> str:
    words = np.mean([len(q.split()) for q in queries])
    ends = np.mean([q.rstrip().endswith("?") for q in queries])
    return (f"| {label} | {len(r)} | {np.mean(r == 1):.2f} | {np.mean(r <= 10):.2f} | {np.mean(1 / r):.3f} | "
            f"{np.median(r):.0f} | {words:.1f} | {ends:.0%} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("set")
    ap.add_argument("folders", nargs="*", help="LLM pairs folders made from the set's train half")
    ap.add_argument("--real", type=int, default=2000, help="real train-half queries to score (seeded order)")
    ap.add_argument("--out", type=Path, help="also write the table here (.md)")
    a = ap.parse_args(argv)
    _, data, split = load("learning_curve_split").load_set(a.set)
    corpus = embed(data.corpus, None, show_progress=False)                              # (N, d)
    row_of = {cid: i for i, cid in enumerate(data.corpus_ids)}
    lines = [f"# Query difficulty under frozen cosine: {a.set} ({len(data.corpus):,} passages)", "",
             f"`python benchmarks/query_difficulty.py {a.set} {' '.join(a.folders)}`", "",
             "| queries | n | own passage 1st | in top 10 | MRR | median rank | words | end in ? |",
             "|---|---|---|---|---|---|---|---|"]
    real = split.train_queries[:a.real]
    texts = [data.queries[i] for i in real]
    lines.append(row("real train-half", texts, ranks(texts, [data.qrels[i] for i in real], corpus)))
    for folder in a.folders:
        tr = load_pairs(folder).splits["train"]
        keep = [i for i, pid in enumerate(tr["passage_id"]) if str(pid).split("#")[0] in row_of]
        texts = [tr["query"][i] for i in keep]
        rel = [{row_of[str(tr["passage_id"][i]).split("#")[0]]} for i in keep]
        lines.append(row(f"{Path(folder).name} (LLM, train split)", texts, ranks(texts, rel, corpus)))
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        write_text(a.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
