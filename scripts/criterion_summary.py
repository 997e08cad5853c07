"""The criterion demo's last lines (scripts/criterion_demo.sh, the notebook): how good the LLM's labels were,
and cosine vs the exported projection on the held-out programs, with the verdict as measured.

    python scripts/criterion_summary.py data/debian-programs.jsonl runs/quickstart/criterion

OUT is the demo's folder: labels/ (generate --judge attribute), model/ (train), eval/report.json (evaluate
--labelled). Debian's labels are read here only to score the LLM's; nothing here feeds them anywhere.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from projector.formats.pairs import UNKNOWN, load_items


def summary(data, out, criteria="data/debian-programs.criteria.json", label: str = "interface") -> list[str]:
    out = Path(out)
    names = json.loads(Path(criteria).read_text(encoding="utf-8"))[label]["labels"]   # LLM name -> Debian value
    human = {r["id"]: r["labels"][label] for r in map(json.loads, Path(data).read_text(encoding="utf-8").splitlines())}
    llm = [r for rows in load_items(out / "labels").values() for r in rows]
    right = sum(names.get(r["label"]) == human[r["id"].rsplit("#", 1)[0]] for r in llm)  # passage id: PKG#0
    unknown = sum(r["label"] == UNKNOWN for r in llm)
    report = json.loads((out / "eval" / "report.json").read_text(encoding="utf-8"))
    rows = {r["name"]: r for r in report["rows"]}
    cos, proj = rows["cosine"], rows["model"]
    d = proj["delta_vs_cosine"]["map"]
    lo, hi = d["ci95"]
    selected = proj["model"]["selected"]
    if selected == "cosine":
        verdict = ("no gain: training on these LLM labels did not beat cosine on validation, so the exported model "
                   "IS cosine (the bundled 1.5B model labels too poorly; label with a stronger LLM)")
    elif lo > 0:
        verdict = f"projector ('{selected}') is better than cosine"
    elif hi < 0:
        verdict = f"projector ('{selected}') is WORSE than cosine: these LLM labels taught the wrong similarity"
    else:
        verdict = f"no measurable gain: projector ('{selected}') is not distinguishable from cosine"
    return [f"criterion demo: the LLM named the {label} Debian gives for {right} of {len(llm)} train programs "
            f"({unknown} 'unknown')",
            f"criterion demo ({report['data']['queries']} held-out programs, relevance = same {label} as Debian's "
            f"people labelled it): cosine mAP {cos['metrics']['map']:.3f} vs projector mAP "
            f"{proj['metrics']['map']:.3f} ({d['delta']:+.3f}, 95% CI {lo:+.3f} to {hi:+.3f}): {verdict}."]


if __name__ == "__main__":
    print("\n" + "\n".join(summary(*sys.argv[1:3])))
