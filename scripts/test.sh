#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite, the real embedded LLM included.
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -m "not llm"  for the quick part only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
set +e
"$PY" -m pytest tests -q -ra "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests: the selection is wrong or tests/ is missing" >&2
  exit 1
fi
exit "$rc"
