"""An embedded server that dies mid-run stops the run at once with why (its exit, its log), recording nothing for
the requests in flight -- instead of every pending request spending its retries against a closed port (a build of
llama.cpp that used AMX where a VM lists it but traps on it died of SIGILL on its first request, and a teach run of
a few dozen requests then sat for half an hour)."""
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from projector.errors import LLMError
from projector.llm.client import ChatClient, Judgement
from projector.llm.records import Job, RecordLog
from projector.llm.runner import Endpoint, run_jobs
from projector.llm.server import LocalServer

DIES = "import os, signal, time; time.sleep({}); os.kill(os.getpid(), signal.SIGILL)"


def _dying_server(tmp_path, after: float) -> LocalServer:
    """A LocalServer whose process is a real one that kills itself with SIGILL after ``after`` seconds."""
    srv = LocalServer(log_path=tmp_path / "server.log")
    srv.log_path.write_text("INFO:     Uvicorn running on http://127.0.0.1:1\nllama: the last line of the log\n")
    srv.process = subprocess.Popen([sys.executable, "-c", DIES.format(after)])
    return srv


def _silent_port():
    """A real socket that accepts connections and never answers: a request to it waits for its time-out."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    held = []
    threading.Thread(target=lambda: [held.append(s.accept()) for _ in range(16)], daemon=True).start()
    return s, s.getsockname()[1]


def test_died_says_how_and_keeps_the_log(tmp_path):
    srv = _dying_server(tmp_path, 0)
    srv.process.wait(10)
    why = srv.died()
    assert "exited with signal SIGILL" in why and "illegal instruction" in why and "the last line of the log" in why
    srv.stop()
    assert (tmp_path / "server.log").exists()


def test_a_server_that_dies_mid_run_stops_the_run_at_once_recording_nothing(tmp_path):
    sock, port = _silent_port()
    llm = Endpoint(SimpleNamespace())
    llm.client = ChatClient(f"http://127.0.0.1:{port}/v1", "m", None, timeout=120, max_retries=6)
    llm.server = _dying_server(tmp_path, 1.0)
    cfg = SimpleNamespace(concurrency=2, batch=False)
    jobs = [Job(f"pair:{i}", {"i": i}, "are these similar?", Judgement, None) for i in range(6)]
    records = RecordLog(tmp_path / "records.jsonl")
    started = time.monotonic()
    with pytest.raises(LLMError, match="exited with signal SIGILL"):
        run_jobs(llm, jobs, {}, records, cfg, "judging")
    assert time.monotonic() - started < 30  # not 6 requests x (120 s time-out + retries)
    assert records.load() == {}  # nothing recorded as failed: a resume asks every one again
    llm.server.stop()
    sock.close()
