"""The criterion demo's last lines (scripts/criterion_demo.sh, the notebook): how often the LLM agreed with your
labels, cosine vs the exported projection on the held-out programs with the verdict as measured, and what the
LLM's labels alone gave.

    python scripts/criterion_summary.py data/debian-programs.jsonl runs/quickstart/criterion

OUT is the demo's folder: labels/ (generate --judge attribute --trusted-labels), model/ (train
--validation-labels), yours-alone/ (train --train-labels), llm-alone/ (train on the LLM's labels alone),
eval/report.json (evaluate --labelled). Debian's
labels of the test programs only score; nothing here feeds them anywhere.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from projector.evaluate.report_html import direction


def _verdict(row: dict) -> str:
    d = row["delta_vs_cosine"]["map"]
    selected = row["model"]["selected"]
    if selected == "cosine":
        return "no gain shown: validation could not show a gain over cosine, so the exported model IS cosine"
    if direction(d) > 0:  # the report's own rule (projector.evaluate.report_html.MIN_DIFFERENCE)
        return f"projector ('{selected}') is better than cosine"
    if direction(d) < 0:
        return f"projector ('{selected}') is WORSE than cosine"
    return f"no measurable gain: projector ('{selected}') is not distinguishable from cosine"


def _line(name: str, row: dict, cosine: float) -> str:
    d = row["delta_vs_cosine"]["map"]
    lo, hi = d["ci95"]
    return (f"{name}: cosine mAP {cosine:.3f} vs projector mAP {row['metrics']['map']:.3f} ({d['delta']:+.3f}, "
            f"95% CI {lo:+.3f} to {hi:+.3f}): {_verdict(row)}.")


def summary(data, out, label: str = "interface") -> list[str]:
    out = Path(out)
    manifest = json.loads((out / "labels" / "manifest.json").read_text(encoding="utf-8"))
    q = manifest.get("label_quality") or {}
    report = json.loads((out / "eval" / "report.json").read_text(encoding="utf-8"))
    rows = {r["name"]: r for r in report["rows"]}
    cosine = rows["cosine"]["metrics"]["map"]
    yours = len((out / "your-labels.jsonl").read_text(encoding="utf-8").splitlines())
    calls = manifest.get("counts", {}).get("items") or manifest.get("llm_calls")
    lines = []
    if q:
        lines.append(f"criterion demo: on your {q['items']} labelled programs the LLM agreed {q['accuracy']:.0%} "
                     f"of the time (always the most common label: {q['majority_rate']:.0%})"
                     + (f", on its most confident half {q['confident_half']['accuracy']:.0%}"
                        if q.get("confident_half") else ""))
    where = f"{report['data']['queries']} held-out programs, relevance = same {label} as Debian's people labelled it"
    lines.append(_line(f"criterion demo ({where}; the LLM's labels, your {yours} validating"
                       + (f", {calls} LLM calls" if calls else "") + ")", rows["model"], cosine))
    if "yours-alone" in rows:
        lines.append(_line("  your labels alone, for comparison", rows["yours-alone"], cosine))
    if "llm-alone" in rows:
        lines.append(_line("  the LLM's labels alone, for comparison", rows["llm-alone"], cosine))
    return lines


if __name__ == "__main__":
    print("\n" + "\n".join(summary(*sys.argv[1:3])))
