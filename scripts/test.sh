#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite, the real embedded LLM included.
# Extra arguments go to pytest, e.g.  bash scripts/test.sh -m "not llm"  for the quick part only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
# tests/evaluate/test_report_html.py renders report.html in a real headless browser: Debian's chromium
# (skipped if present).
if ! command -v chromium >/dev/null 2>&1 && ! command -v google-chrome >/dev/null 2>&1; then
  apt=()
  if [ "$(id -u)" -eq 0 ]; then apt=(env); elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then apt=(sudo -n); fi
  if [ ${#apt[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing chromium (apt-get) for the report.html browser test" >&2
    "${apt[@]}" apt-get update -qq >/dev/null && "${apt[@]}" DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
      >/dev/null || echo "test.sh: chromium could not be installed: the browser test will be skipped" >&2
  else
    echo "test.sh: no chromium, and no root/sudo apt-get to install it: the browser test will be skipped" >&2
  fi
fi
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
