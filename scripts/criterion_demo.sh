#!/usr/bin/env bash
# The criterion demo: "similar in which sense?" -- are two programs the same kind of user interface?
# On data/debian-programs.jsonl (300 Debian programs: 150 train, 150 test, with Debian's own labels; data/README.md):
#   your labels                  Debian's labels of 40 seeded *train* programs stand in for the handful of items a
#                                user labels themselves (runs/quickstart/criterion/your-labels.jsonl)
#   generate --judge attribute   the local LLM judges every train program (150 calls; it sees each program's
#                                description, never a label) as probabilities over the labels, your 40 first:
#                                it then says how often it agrees with you, before the long run
#   train --validation-labels    the LLM's most confident labels (30%) train a map; your labels choose it, gate it
#                                against cosine (kept when no gain shows) and calibrate it
#   train, for comparison        your labels alone (--train-labels), the LLM's alone (validated on its own labels)
#   evaluate --labelled          cosine vs both maps on the 150 held-out *test* programs, relevance = same
#                                interface as Debian's contributors labelled it (the human labels only score)
# The last lines: the LLM's agreement with your labels, cosine vs projector mAP with the CI and the verdict, and
# what your labels alone and the LLM alone gave, as measured.
#   bash scripts/criterion_demo.sh [N]     N of your labels (default 40)
# Called by quickstart.sh (after setup); outputs in runs/quickstart/criterion/; re-running resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
data=data/debian-programs.jsonl
out=runs/quickstart/criterion
n_yours=${1:-40}
mkdir -p "$out"

# The LLM's corpus: the train programs' id and text only (no labels, no test program); and "your" labels:
# Debian's interface of N seeded train programs, in the criterion's label names.
"$PY" - "$data" "$out" "$n_yours" <<'PY'
import json, random, sys
from projector.files import write_text
data, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [json.loads(line) for line in open(data, encoding="utf-8")]
train = [r for r in rows if r["split"] == "train"]
write_text(f"{out}/train-programs.jsonl", "".join(json.dumps({"id": r["id"], "text": r["text"]}, ensure_ascii=False)
                                                  + "\n" for r in train))
names = {v: k for k, v in json.load(open("data/debian-programs.criteria.json"))["interface"]["labels"].items()}
yours = random.Random(0).sample(train, n)
write_text(f"{out}/your-labels.jsonl", "".join(json.dumps({"id": f"{r['id']}#0", "label": names[r["labels"]["interface"]]})
                                               + "\n" for r in yours))
PY
# The criterion sentence and the label names the LLM chooses from (data/debian-programs.criteria.json).
criterion=$("$PY" -c 'import json; print(json.load(open("data/debian-programs.criteria.json"))["interface"]["criterion"])')
labels=$("$PY" -c 'import json; print(",".join(json.load(open("data/debian-programs.criteria.json"))["interface"]["labels"]))')

"$PY" -m projector.generate --corpus "$out/train-programs.jsonl" --id-field id --out "$out/labels" \
    --task pairs --judge attribute --criterion "$criterion" --labels "$labels" --all \
    --trusted-labels "$out/your-labels.jsonl" --label-probabilities auto \
    --chunk-tokens 512 --validation-fraction 0.2 --test-fraction 0 --temperature 0 --max-tokens 60
# The recipe: the LLM's most confident labels train, yours choose the map, gate it against cosine, calibrate it.
"$PY" -m projector.train --pairs "$out/labels" --out "$out/model" --no-sentence-transformers \
    --validation-labels "$out/your-labels.jsonl"
# For comparison: your labels alone (validated on half-splits of them), the LLM's alone (validated on its own).
"$PY" -m projector.train --pairs "$out/labels" --out "$out/yours-alone" --no-sentence-transformers \
    --train-labels "$out/your-labels.jsonl"
"$PY" -m projector.train --pairs "$out/labels" --out "$out/llm-alone" --no-sentence-transformers
"$PY" -m projector.evaluate --labelled "$data" --label interface --split test --model "$out/model" \
    --model "$out/yours-alone" --model "$out/llm-alone" --out "$out/eval"

"$PY" scripts/criterion_summary.py "$data" "$out"   # the last lines: the LLM's agreement, cosine vs projector
