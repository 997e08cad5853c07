#!/usr/bin/env bash
# Set up, then run projector end to end on the bundled corpus with the embedded defaults:
#   generate (local LLM writes questions) -> train (projection) -> evaluate (vs cosine + baselines) -> load.
# By default questions are written for a seeded sample of 60 passages (a few minutes on 2 cores);
#   bash scripts/quickstart.sh --full     does every passage of the corpus (~631 passages; ~40 min here).
# Then the criterion demo (scripts/criterion_demo.sh, ~9 min more): "same kind of user interface?" on 300 bundled
#   Debian programs: Debian's labels of 40 train programs standing in for yours, the LLM's judgments of all 150
#   -> train -> cosine vs projector mAP on 150 held-out programs that Debian's people labelled (data/README.md).
# Outputs go to runs/quickstart/ (the report: runs/quickstart/eval/report.html). Re-running resumes where it stopped.
# The retrieval part ends with where its report is and its one-sentence verdict (trained vs cosine, 95% CIs); the
#   last line is the criterion demo's: cosine mAP vs projector mAP on the held-out programs, and its verdict.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
sample=(--max-passages 60)
if [ "${1:-}" = "--full" ]; then sample=(--all); fi
out=runs/quickstart

"$PY" -m projector.generate --corpus data/python-reference.jsonl --id-field id --out "$out/pairs" "${sample[@]}"
"$PY" -m projector.train --pairs "$out/pairs" --out "$out/model"
"$PY" -m projector.evaluate --model "$out/model" --pairs "$out/pairs" --split test --out "$out/eval"
"$PY" - "$out/model" "$out/eval" <<'PY'
import json, sys, projector
from pathlib import Path
from projector.evaluate import report_html
p = projector.load(sys.argv[1])
q = p.encode_queries(["How do I catch several exception types in one except clause?"])
d = p.encode_documents(["An except clause may name multiple exceptions as a parenthesized tuple."])
print(f"projector.load: {p.mode} projection, P(relevant) = {p.probability(q, d)[0, 0]:.3f}")
# The last lines: where to look, and the one sentence to quote.
report = Path(sys.argv[2])
print(f"\nreport: {(report / 'report.html').resolve()}  (open it in a browser; report.md beside it)")
for sentence in report_html.verdict(json.loads((report / "report.json").read_text())):
    print(sentence)
PY

# Part 2: similar in which sense? The criterion demo on data/debian-programs.jsonl.
bash scripts/criterion_demo.sh
