"""What a compare.py result says: the issue's targets, the markdown table and the files it is written to.

    result["targets"] = targets(result)     # each target with met / by how much
    write(result, Path("benchmarks/results"))   # NAME.md (markdown(result)) + NAME.json; --adapters: adapters-NAME.*

The result dict is ``compare.evaluate_all``'s: set, data, info, rows (metrics, CIs, costs, notes), config.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from siblings import load  # benchmarks/ is on sys.path: compare.py put it there

load("results")  # as benchmarks_results
from benchmarks_results import in_repo  # noqa: E402


def targets(res: dict) -> list[dict]:
    """The issue's targets, each with met / by how much."""
    rows = {r["name"]: r for r in res["rows"] if "metrics" in r}
    cos = res["cosine_ndcg@10"]
    proj = {n: r for n, r in rows.items() if r["kind"] == "projector" and "fixed" not in n}
    out = []
    if proj:
        best = max(proj, key=lambda n: proj[n]["metrics"]["ndcg@10"])
        v = proj[best]["metrics"]["ndcg@10"]
        out.append({"target": "best projector NDCG@10 >= 1.10 x frozen cosine", "value": round(v / cos, 4),
                    "met": v >= 1.10 * cos, "detail": f"{best} {v:.4f} vs cosine {cos:.4f} ({v / cos:.3f}x)"})
        li = next((r for n, r in rows.items() if n.startswith("LlamaIndex")), None)
        if li:
            lv = li["metrics"]["ndcg@10"]
            out.append({"target": "best projector NDCG@10 >= LlamaIndex adapter", "value": round(v - lv, 4),
                        "met": v >= lv, "detail": f"{v:.4f} vs {lv:.4f} ({v - lv:+.4f})"})
        eces = {n: r["ece"] for n, r in proj.items() if r.get("ece") is not None}
        if eces:
            n = min(eces, key=eces.get)
            held = proj[best].get("heldout_llm_test", {}).get("ece")
            out.append({"target": "ECE of probability() <= 0.03", "value": round(proj[best]["ece"], 4),
                        "met": proj[best]["ece"] <= 0.03,
                        "detail": f"{best}: real queries {proj[best]['ece']:.4f}; LLM held-out test "
                                  f"{held if held is None else round(held, 4)}; lowest over projector rows {n} "
                                  f"{eces[n]:.4f}"})
    all_rows = {r["name"]: r for r in res["rows"]}
    timed = all_rows.get(res["info"]["timed_projector"])
    li = next((r for n, r in all_rows.items() if n.startswith("LlamaIndex") and "cost" in r and r["cost"]), None)
    if timed and li and timed.get("cost"):
        t, l = timed["cost"]["wall_s"], li["cost"]["wall_s"]
        pair_cold = t + res["info"].get("embed_anchor_texts_s", 0.0)
        cold = t + res["info"]["embed_once_s"]
        out.append({"target": "projector trains >= 10x faster than LlamaIndex (same epochs, data)",
                    "value": round(l / t, 1), "met": l / t >= 10,
                    "detail": f"LlamaIndex {l:.1f}s vs projector {t:.1f}s on cached embeddings ({l / t:.1f}x); "
                              f"+ embedding the same pairs' texts once, cold: {pair_cold:.1f}s ({l / pair_cold:.1f}x); "
                              f"+ projector's whole cold encoder pass (all passages + validation queries): "
                              f"{cold:.1f}s ({l / cold:.1f}x)"})
    return out


def fmt(v, nd=3) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def markdown(res: dict) -> str:
    info = res["info"]
    lines = [f"## {res['set']}: {res['data']['queries']} real queries, {res['data']['corpus']} passages",
             "",
             f"Trained on {info['train_pairs']} LLM-made (query, passage) pairs from the corpus alone "
             f"(anchors' timing: {info['anchor_pairs']}); evaluated on the real queries over the whole corpus. "
             f"Encoder all-MiniLM-L6-v2 (frozen except the full fine-tune). {res['when']}.",
             "",
             "| method | NDCG@10 | Δ vs cosine [95% CI] | MRR@10 | Recall@10 | ECE | train wall s | × projector | "
             "peak MB | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        if "error" in r:
            lines.append(f"| {r['name']} | – | – | – | – | – | – | – | – | {r['error']} |")
            continue
        m, c = r["metrics"], r.get("cost", {})
        d = r.get("delta_vs_cosine", {}).get("ndcg@10")
        ds = f"{d['delta']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d else "–"
        mem = f"{c['peak_mb']:.0f}" + (" (tm)" if c.get("memory") == "tracemalloc" else "") if c else "–"
        lines.append(f"| {r['name']} | {m['ndcg@10']:.3f} | {ds} | {m['mrr@10']:.3f} | {m['recall@10']:.3f} | "
                     f"{fmt(r.get('ece'))} | {fmt(c.get('wall_s'), 1)} | {fmt(r.get('time_vs_projector'), 2)} | "
                     f"{mem} | {r.get('note', '')} |")
    lines += ["",
              f"Costs: `train wall s` of a trained row is its child process's wall time (projector: `train()` on "
              f"cached embeddings, incl. loading and candidate selection; anchors: including the embedding they do "
              f"themselves). The shared encoder pass, cold: {info['embed_once_s']}s for {info['embed_once_texts']} "
              f"texts (`embed once`)"
              + (f"; the anchors' pairs' texts alone: {info['embed_anchor_texts_s']}s for {info['embed_anchor_texts']} "
                 "texts" if info.get("embed_anchor_texts") else "")
              + ". Peak MB: the child process's peak RSS (VmHWM; its imports alone (Python, numpy, torch, projector): "
              f"{info['import_floor_rss_mb']} MB); (tm) = tracemalloc peak of an in-process baseline fit. "
              "ECE: 15 bins, on every positive + 5 hard + 5 random negatives per real query; only for rows with "
              "probability(). `× projector`: wall time over `projector asym k=d`'s.",
              "", "Targets:", ""]
    lines += [f"- {'MET' if t['met'] else 'MISSED'}: {t['target']}: {t['detail']}" for t in res["targets"]]
    return "\n".join(lines) + "\n"


def recorded_config(cfg) -> dict:
    """The settings (a ``CompareConfig``) as a result records them: a folder inside the repo relative to it
    (``benchmarks/pairs``), so that committed results name no machine's paths; a folder elsewhere as it was given."""
    rec = dataclasses.asdict(cfg)
    for key in ("pairs_root", "out", "work"):
        if rec[key] is not None:
            rec[key] = in_repo(rec[key]) or rec[key]
    return rec


def write(res: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"adapters-{res['set']}" if res["config"].get("adapters") else res["set"]
    (out / f"{stem}.md").write_text(markdown(res))
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")

