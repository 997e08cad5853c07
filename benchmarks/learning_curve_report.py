"""The learning curve's report (``benchmarks/learning_curve.py``): the issue's targets and the markdown.

    from learning_curve_report import markdown, targets
    res["targets"] = targets(res["sets"]); text = markdown(res)

Input: the results ``learning_curve.write`` records (``learning-curve.json``: per set its rows, curve,
split, commands); output: the targets as {set, target, met (True / False / None: not measured), value,
detail} and ``learning-curve.md``. It reads the results only: nothing here trains or scores.
"""
from __future__ import annotations

import json


# ---------------------------------------------------------------------------------------------- targets


def _row(s: dict, label: str, recipe: str, n: int) -> dict | None:
    return next((r for r in s["rows"] if (r["label"], r["recipe"], r["count"]) == (label, recipe, n)
                 and "ndcg10" in r), None)


def targets(sets: dict) -> list[dict]:
    """The issue's targets with met (True / False / None: not measured) and the figures."""
    out = []
    for key, s in sets.items():
        labels = sorted({r["label"] for r in s["rows"] if r["source"] == "llm"}) or ["llm"]
        for label in labels:
            for recipe in s["recipes"]:
                both = [(n, _row(s, label, recipe, n), _row(s, "real", recipe, n)) for n in s["counts"]]
                both = [(n, a["delta"], b["delta"]) for n, a, b in both if a and b]
                gap = min((a - b for _, a, b in both), default=None)
                flat = bool(both) and all(a == b == 0 for _, a, b in both)  # met, but only by both keeping cosine
                out.append({"set": key, "target": f"{label} gain over cosine >= real-query gain at every count "
                                                  f"({recipe} recipe)",
                            "met": None if gap is None else gap >= 0, "value": gap,
                            "detail": ("; ".join(f"{n}: {label} {a:+.4f} vs real {b:+.4f}" for n, a, b in both)
                                       + (" (both export cosine at every count: nothing learned on either side)"
                                          if flat else "")) or "not measured: LLM or real rows missing"})
        if key == "nq-wiki":
            llm = [r for r in s["rows"] if r["source"] == "llm" and "ndcg10" in r and r["count"] <= 3000]
            best = max(llm, key=lambda r: r["gain_pct"], default=None)
            out.append({"set": key, "target": "nq-wiki: >= +3% NDCG@10 over cosine from <= 3,000 LLM questions",
                        "met": None if best is None else best["gain_pct"] >= 3.0,
                        "value": None if best is None else best["gain_pct"],
                        "detail": "not measured: no LLM row" if best is None else
                                  f"best {best['name']}: {best['ndcg10']:.4f} vs cosine {s['cosine_ndcg10']:.4f} "
                                  f"({best['gain_pct']:+.2f}%)"})
        scored = [r for r in s["rows"] if "ndcg10" in r]
        below = [r["name"] for r in scored if r["delta_ci95"][1] < 0]
        ties = [r["name"] for r in scored if r["delta_ci95"][0] <= 0 <= r["delta_ci95"][1]]
        out.append({"set": key, "target": "no exported projection below cosine beyond noise (95% CI of Δ below 0)",
                    "met": None if not scored else not below, "value": len(below),
                    "detail": f"below: {', '.join(below) or 'none'}; ties with cosine (CI holds 0): "
                              f"{', '.join(ties) or 'none'}"})
    return out


# ---------------------------------------------------------------------------------------------- output


def _cell(r: dict | None) -> str:
    if r is None:
        return "–"
    return "missing" if "ndcg10" not in r else f"{r['ndcg10']:.3f} ({r['gain_pct']:+.1f}%)"


def _teacher_note(f: dict) -> str:
    """A taught folder (``projector teach``): what the teacher did to it and what it cost."""
    t, c, cost = f["teacher"], f["counts"], f["cost"]
    return (f"; taught from {t['pairs']} (filter {'on' if t['filter'] else 'off'}, {t['candidates']} candidates a "
            f"train query, keep score {t['keep_score']}): dropped {sum(c['dropped'].values())} queries, "
            f"{c['negatives']} judged negatives, {c['false_negatives']} false negatives left out; "
            f"{cost['calls']} LLM calls, {cost['llm_seconds']:.0f} s")


def row_pieces(f: dict | None, recipe: str) -> list[str]:
    """The issue's pieces as a row of an LLM folder and a recipe has them: 1 query style, 2 teacher, 3 coverage,
    5 the map (read off the folder's manifest and the recipe's name)."""
    if f is None:
        return ["real queries", "–", "–", recipe]
    prompt = f.get("prompt_version") or ""
    style = ("few-shot queries" if prompt.startswith("qa-examples") else
             "few-shot passage+query pairs" if prompt.startswith("qa-shots") else
             "mixed forms (v2)" if prompt.startswith("qa.v2") else
             "two questions (v1)" if prompt.startswith("qa.v1") else prompt or "?")
    t, rt = f.get("teacher"), f.get("roundtrip_filter")
    teacher = " + ".join(x for x in ("LLM filter" if t and t["filter"] else "",
                                     f"{t['candidates']} judged negatives" if t and t["candidates"] else "",
                                     f"cosine round-trip (rank <= {rt['max_rank']})" if rt else "") if x) or "off"
    sample = (f.get("settings") or {}).get("sample", "uniform")
    return [style, teacher, sample, recipe]


def ablation(s: dict) -> list[str]:
    """The ablation table: every scored row with the pieces it has on, at the counts two or more LLM rows share."""
    llm = [r for r in s["rows"] if r["source"] == "llm" and "ndcg10" in r]
    counts = sorted({r["count"] for r in llm if sum(x["count"] == r["count"] for x in llm) >= 2})
    if not counts:
        return []
    lines = ["", f"Ablation (issue 11's pieces on/off; the rows above at N = {', '.join(map(str, counts))}):", "",
             "| N | row | 1 query style | 2 teacher | 3 passages | 5 map (recipe) | validated on | NDCG@10 | "
             "Δ vs cosine [95% CI] |", "|---|---|---|---|---|---|---|---|---|"]
    for n in counts:
        for r in sorted((r for r in s["rows"] if r["count"] == n and "ndcg10" in r), key=lambda r: r["name"]):
            f = s["llm_folders"].get(r["label"]) if r["source"] == "llm" else None
            lo, hi = r["delta_ci95"]
            val = ("synthetic split" if r["source"] == "llm" and not r["label"].endswith("+realval")
                   else "real queries")
            pieces = row_pieces(f, r["recipe"])
            if r["source"] == "real+llm":  # N real queries + an LLM folder: the folder's pieces, behind "real +"
                pieces = row_pieces(s["llm_folders"].get(r["label"][len("real+"):]), r["recipe"])
                pieces[0] = f"real queries + {pieces[0]}"
            lines.append(f"| {n} | {r['label']} | " + " | ".join(pieces) + f" | {val}"
                         + f" | {r['ndcg10']:.4f} | {r['delta']:+.4f} [{lo:+.4f}, {hi:+.4f}] |")
    return lines


def markdown(res: dict) -> str:
    lines = ["# Learning curve: LLM-made vs real training queries (issue 11, piece 6)", "",
             "Each row is `projector.train` on N (query, passage) pairs of *train-half* passages, scored by "
             "NDCG@10 on the real queries of the *test-half* passages, ranked against the whole corpus "
             "(`projector.evaluate`'s retrieval evaluator; Δ vs frozen cosine with a paired bootstrap 95% CI). "
             "No row trains or validates on a test-half query. `real`: N real queries (the reference, the one place "
             "real queries are trained on), validated on other real train-half queries; `llm`: the first N train "
             "pairs of a `projector generate` folder made from the train-half passages, validated on its own "
             "synthetic split. Encoder: the bundled all-MiniLM-L6-v2, frozen.", "",
             f"Split rule: {res['split_rule']}.", ""]
    for key, s in res["sets"].items():
        rc = list(s["recipes"])
        mixed = sorted({r["label"] for r in s["rows"] if r["source"] == "real+llm"})
        labels = ["real"] + mixed + sorted({r["label"] for r in s["rows"] if r["source"] == "llm"} or {"llm"})
        lines += [f"## {key}: {s['data']['test_queries']:,} test-half real queries over all {s['data']['corpus']:,} "
                  f"passages", "",
                  f"Train half: {s['split']['passages']['train']:,} passages, {s['split']['queries']['train']:,} real "
                  f"queries ({s['split']['queries']['dropped']} dropped by the rule); validation: real rows "
                  f"{s['validation']['real']}; LLM rows {s['validation']['llm']}. Frozen cosine NDCG@10 "
                  f"{s['cosine_ndcg10']:.4f}. Recipes: " + "; ".join(f"`{k}` {json.dumps(v)}"
                                                                   for k, v in s["recipes"].items())
                  + f". {s['when']}, {s['wall_s']:.0f}s."]
        if mixed:
            lines += ["", "`real+LABEL`: the real row's N real queries plus every train pair of the LLM folder LABEL, "
                          "validated like the real rows (N counts the real queries only): what LLM questions add to "
                          "a user's own few queries. Not an LLM row: no target counts it."]
        for r in rc:  # one table per recipe: a column per row group stays readable
            lines += ["", f"Recipe `{r}`: NDCG@10 on the test-half real queries (gain over cosine):", "",
                      "| N | cosine | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
            for n in s["counts"]:
                cells = [_cell(next((x for x in s["rows"] if (x["label"], x["recipe"], x["count"]) == (lb, r, n)),
                                    None)) for lb in labels]
                lines.append(f"| {n:,} | {s['cosine_ndcg10']:.3f} | " + " | ".join(cells) + " |")
        lines += ["", "| row | NDCG@10 | Δ vs cosine [95% CI] | MRR@10 | Recall@10 | exported (epochs) | "
                      "val NDCG@10 exported / trained / cosine | train s |", "|---|---|---|---|---|---|---|---|"]
        for r in s["rows"]:
            if "ndcg10" in r:
                lo, hi = r["delta_ci95"]
                lines.append(f"| {r['name']} | {r['ndcg10']:.4f} | {r['delta']:+.4f} [{lo:+.4f}, {hi:+.4f}] | "
                             f"{r['mrr10']:.3f} | {r['recall10']:.3f} | {r['selected']} ({r['epochs']}) | "
                             f"{r['val_ndcg10_selected']:.3f} / {r['val_ndcg10_trained']:.3f} / {r['val_ndcg10_cosine']:.3f} | "
                             f"{r['train_s']} |")
        missing = [r for r in s["rows"] if "missing" in r]
        if missing or not s["llm_folders"]:
            lines += ["", "Missing rows (not faked):"]
            if not s["llm_folders"]:
                lines.append(f"- every LLM row: no LLM pairs folder given (`--llm-pairs {key}=DIR`, a `projector "
                             f"generate` folder made from `learning_curve.py corpus {key} OUT.jsonl`)")
            lines += [f"- {r['name']}: {r['missing']}" for r in missing]
        for label, f in s["llm_folders"].items():
            lines += ["", f"`{label}`: {f['path']}, {f['train_pairs']} train / {f['validation_pairs']} validation "
                          f"pairs, model {f.get('model')}, prompt {f.get('prompt_version')}"
                          + (f"; {f['dropped_test_texts']} rows equal to a test query's text dropped"
                             if f["dropped_test_texts"] else "")
                          + (_teacher_note(f) if "teacher" in f else "")]
        lines += ablation(s)
        lines += ["", "Commands:", ""] + [f"- {k}: `{v}`" for k, v in s["command"].items()] + [""]
    status = {True: "MET", False: "MISSED", None: "NOT MEASURED"}
    lines += ["## Targets", ""] + [f"- {status[t['met']]} ({t['set']}): {t['target']}: {t['detail']}"
                                   for t in res["targets"]]
    return "\n".join(lines) + "\n"
