#!/usr/bin/env bash
# The criterion demo: "similar in which sense?" -- are two programs the same kind of user interface?
# On data/debian-programs.jsonl (300 Debian programs: 150 train, 150 test, with Debian's own labels; data/README.md):
#   generate --judge attribute   the local LLM names the interface of a seeded sample of the *train* programs
#                                (one call each; it sees each program's description, never a label)
#   train                        a symmetric projection fitted on those LLM labels
#   evaluate --labelled          cosine vs that projection on the 150 held-out *test* programs, relevance = same
#                                interface as Debian's contributors labelled it (the human labels only score)
# The last line: cosine mAP vs projector mAP and the verdict, as measured (no gain is said plainly).
#   bash scripts/criterion_demo.sh [N]     N train programs labelled by the LLM (default 40, ~7 s each on 2 idle cores)
# Called by quickstart.sh (after setup); outputs in runs/quickstart/criterion/; re-running resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
data=data/debian-programs.jsonl
out=runs/quickstart/criterion
n_items=${1:-40}
mkdir -p "$out"

# The LLM's corpus: the train programs' id and text only (no labels, no test program).
"$PY" - "$data" "$out/train-programs.jsonl" <<'PY'
import json, sys
from projector.files import write_text
rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
write_text(sys.argv[2], "".join(json.dumps({"id": r["id"], "text": r["text"]}, ensure_ascii=False) + "\n"
                                for r in rows if r["split"] == "train"))
PY
# The criterion sentence and the label names the LLM chooses from (data/debian-programs.criteria.json).
criterion=$("$PY" -c 'import json; print(json.load(open("data/debian-programs.criteria.json"))["interface"]["criterion"])')
labels=$("$PY" -c 'import json; print(",".join(json.load(open("data/debian-programs.criteria.json"))["interface"]["labels"]))')

# Its own split: 30% of the labelled programs choose the model (validation); the test is Debian's test half.
"$PY" -m projector.generate --corpus "$out/train-programs.jsonl" --id-field id --out "$out/labels" \
    --task pairs --judge attribute --criterion "$criterion" --labels "$labels" --max-items "$n_items" \
    --chunk-tokens 512 --validation-fraction 0.3 --test-fraction 0 --temperature 0 --max-tokens 60
"$PY" -m projector.train --pairs "$out/labels" --out "$out/model" --no-sentence-transformers
"$PY" -m projector.evaluate --labelled "$data" --label interface --split test --model "$out/model" --out "$out/eval"

"$PY" scripts/criterion_summary.py "$data" "$out"   # the last lines: LLM label quality, cosine vs projector
