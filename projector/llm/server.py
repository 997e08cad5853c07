"""The embedded local LLM: a small instruct model served by llama.cpp on 127.0.0.1, no key, no network.

The model file -- GGUF parts on PyPI, assembled once and verified -- is ``projector.llm.models``
(``resolve_model``, ``KNOWN_MODELS``, ``DEFAULT_MODEL``).

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

"""
from __future__ import annotations

import atexit
import ctypes
import importlib.util
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

from projector.errors import LLMError
from projector.llm.models import DEFAULT_MODEL, KNOWN_MODELS, resolve_model

logger = logging.getLogger(__name__)

# Modules `python -m llama_cpp.server` imports; all come with `pip install "llama-cpp-python[server]"`.
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
_SERVER_PIP = 'pip install "llama-cpp-python[server]"'


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
        missing = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
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
