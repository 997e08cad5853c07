"""A real HTTP server on 127.0.0.1 speaking the chat-completions route, with injectable faults.

Not a mock of the client: projector's ``openai`` client talks to it over TCP like to any endpoint.
Answers are made from the prompt (questions about the passage's first words; judgements by a keyword), so
the tests can check which passage each pair came from.

Faults are a queue consumed one per request: "429" (with Retry-After: 0), "500", "503", "timeout"
(sleeps past the client's time-out), "reset" (closes the socket), "malformed" (not JSON), "offschema"
(JSON of the wrong shape), "preamble" (a preamble among the questions), "empty" (empty strings),
"copy" (the passage copied verbatim), "meta" (a question about "this passage"), "snippet" (one about "the
given code snippet"), for item labels
"outside" (a value not in the label set; for grades, 7) and "spelling" (the label in other words and case), and
in batches "drop" (a request left out of the output file). ``/v1/embeddings`` answers ``embed_dim``-d
vectors made from each text's hash (base64 or float), counting every text it embedded (``embedded``), with
the faults "429", "500", "reset", "timeout", "garbage" (200 with a body that is not JSON), "dim" (vectors one
dimension short), "count" (one vector fewer than texts) and "nan"; a model other than ``embed_model`` is a
404, and with ``api_key`` a request without that bearer key a 401. Also serves the Batch API's files and
batches routes (a batch completes on its second status check).

Log-probabilities: with ``logprobs=True`` the server answers a request asking for them (``logprobs``,
``top_logprobs``) as OpenAI does: one token and ``choices[0].logprobs.content[0].top_logprobs``. For lettered
options ("Answer with the letter only") the group whose first word is the item's first word gets most of the
probability (``letter_logprobs``), spelt "X" and " X" like real tokenizers, beside word tokens; an item
matching no group spreads it evenly. Without it (the default, as servers that ignore the parameter) the
reply carries no logprobs. Fault "wordy" puts no letter among the top tokens. Run standalone (for
subprocess tests):

    python tests/openai_server.py --port-file PATH [--delay 0.05] [--faults 429,500,...]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def passage_of(prompt: str) -> str:
    """The passage a prompt asks about (the last one: few-shot passages come first)."""
    found = re.findall(r'[Pp]assage:\n"""\n(.*?)\n"""', prompt, re.S)
    return found[-1] if found else prompt


def _n(prompt: str) -> int:
    m = re.search(r"Write (\d+) different (?:questions|queries)", prompt)
    return int(m.group(1)) if m else 2


def questions_for(passage: str, n: int) -> list[str]:
    """Deterministic questions that name the passage (first 3 words), so tests can trace them back."""
    head = " ".join(passage.split()[:3])
    return [f"Question {i + 1} about {head}?" for i in range(n)]


def letter_logprobs(prompt: str, top: int, fault: str | None = None) -> dict[str, float]:
    """Top tokens of a lettered-options question: the matching group's letter first (see the module docstring)."""
    groups = re.findall(r"^([A-Z])\. (.+)$", prompt.split("Groups:\n", 1)[1].split("\n\n", 1)[0], re.M)
    item = re.search(r'Item:\n"""\n(.*?)\n"""', prompt, re.S).group(1)
    first = item.split()[0].lower() if item.split() else ""
    match = next((letter for letter, name in groups if name.split()[0].lower() == first), None)
    out = {"The": -4.0, "Answer": -4.5, "This": -5.0}
    if fault != "wordy":
        for letter, _ in groups:
            lp = (-0.15 if letter == match else -5.0) if match else -1.6  # sums to < 1 with the rest
            out[letter], out[" " + letter] = lp, lp - 4.0
    return dict(sorted(out.items(), key=lambda kv: -kv[1])[:top])


class FakeOpenAI:
    def __init__(self, faults=(), delay: float = 0.0, hang_seconds: float = 5.0, logprobs: bool = False,
                 embed_dim: int = 8, embed_model: str = "fake-embed", api_key: str | None = None):
        self.logprobs = logprobs
        self.faults = deque(faults)
        self.embed_dim, self.embed_model, self.api_key = embed_dim, embed_model, api_key
        self.embedded = Counter()  # text -> times it was embedded (answered with vectors)
        self.delay, self.hang_seconds = delay, hang_seconds
        self.requests = 0
        self.served = Counter()  # what each request got: "ok" or the fault name
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self._lock = threading.Lock()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.batch_polls_to_finish = 2  # a batch completes on its 2nd status check
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = None

    def __enter__(self):
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def next_fault(self):
        with self._lock:
            self.requests += 1
            return self.faults.popleft() if self.faults else None

    def answer(self, body: dict, fault: str | None) -> str:
        prompt = body["messages"][0]["content"]
        if "Answer with the letter only" in prompt:  # lettered options: the most likely letter
            return next(iter(letter_logprobs(prompt, 1, fault))).strip()
        if "Rewrite the text below" in prompt:
            text = re.search(r'Text:\n"""\n(.*?)\n"""', prompt, re.S).group(1)
            return json.dumps({"text": "PLAIN " + " ".join(text.split())})
        if "Task: put one item into one group" in prompt:  # attribute judge: the group named by the first word
            groups = re.findall(r'"([^"]+)"', re.search(r"Groups: (.*); or ", prompt).group(1))
            item = re.search(r'Item:\n"""\n(.*?)\n"""', prompt, re.S).group(1)
            first = item.split()[0].lower() if item.split() else ""
            label = next((g for g in groups if g.split()[0].lower() == first), "unknown")
            if fault == "outside":
                label = "something else entirely"
            elif fault == "spelling" and label != "unknown":
                label = f"The {label.upper()} group"
            return json.dumps({"label": label})
        if "Name the groups to use" in prompt:  # label-set proposal: the examples' first words
            firsts = [line[2:].split()[0].lower() for line in prompt.splitlines() if line.startswith("- ")]
            return json.dumps({"labels": sorted(set(firsts))})
        if "You grade search results" in prompt:  # relevance teacher: 3 when the query names the passage's first word
            passage = passage_of(prompt)
            query = re.search(r"\nQuery: (.*)\n", prompt).group(1).lower()
            first = passage.split()[0].lower() if passage.split() else ""
            score = 3 if first in re.findall(r"\w+", query) else 0
            return json.dumps({"score": 7 if fault == "outside" else score})
        if "Are A and B similar" in prompt:
            a = re.search(r'Text A:\n"""\n(.*?)\n"""', prompt, re.S).group(1)
            b = re.search(r'Text B:\n"""\n(.*?)\n"""', prompt, re.S).group(1)
            key = lambda t: t.split()[0].lower() if t.split() else ""  # noqa: E731 - "same first word"
            return json.dumps({"reason": "first words compared", "similar": key(a) == key(b)})
        passage, n = passage_of(prompt), _n(prompt)
        qs = questions_for(passage, n)
        if fault == "preamble":
            qs = ["Here are two questions:"] + qs
        elif fault == "empty":
            qs = [""] * n
        elif fault == "meta":
            qs = [f"What does this passage say about {passage.split()[0]}?"] + qs[1:]
        elif fault == "snippet":  # the meta wording issue 11 found the checks let through
            qs = [f"What is the purpose of {passage.split()[0]} in the given code snippet?"] + qs[1:]
        elif fault == "copy":
            qs = [" ".join(passage.split()[:12])] * n
        return json.dumps({"questions": qs})

    def content_for(self, body: dict, fault: str | None) -> str:
        if fault == "malformed":
            return '{"questions": ["unterminated'
        if fault == "offschema":
            return json.dumps({"answer": "no questions here"})
        return self.answer(body, fault)

    def completion(self, body: dict, content: str, fault: str | None = None) -> dict:
        choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
        if self.logprobs and body.get("logprobs"):
            prompt = body["messages"][0]["content"]
            top = (letter_logprobs(prompt, body.get("top_logprobs") or 1, fault)
                   if "Answer with the letter only" in prompt else {content[:4]: -0.1})
            first = next(iter(top))
            choice["logprobs"] = {"content": [{"token": first, "logprob": top[first], "bytes": None, "top_logprobs": [
                {"token": t, "logprob": lp, "bytes": None} for t, lp in top.items()]}]}
            choice["message"]["content"] = first.strip()
        return {"id": f"chatcmpl-{self.requests}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "fake-model"),
                "choices": [choice],
                "usage": {"prompt_tokens": len(json.dumps(body)) // 4, "completion_tokens": len(content) // 4,
                          "total_tokens": len(json.dumps(body)) // 4 + len(content) // 4}}

    def vector(self, text: str) -> list[float]:
        import hashlib
        import random

        rng = random.Random(hashlib.sha256(text.encode()).digest())
        return [rng.uniform(-1, 1) for _ in range(self.embed_dim)]

    def embeddings(self, body: dict, fault: str | None) -> tuple[int, bytes | dict]:
        import base64
        import struct

        if body.get("model") != self.embed_model:
            return 404, {"error": {"message": f"The model `{body.get('model')}` does not exist", "code": "model_not_found"}}
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if fault == "garbage":
            return 200, b"<html>upstream error</html>"
        vecs = [self.vector(t) for t in texts]
        if fault == "dim":
            vecs = [v[:-1] for v in vecs]
        elif fault == "count":
            vecs = vecs[:-1]
        elif fault == "nan":
            vecs[0][0] = float("nan")
        with self._lock:
            self.embedded.update(texts[:len(vecs)])
        b64 = body.get("encoding_format") == "base64"
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if b64 else v}
                for i, v in enumerate(vecs)]
        tokens = sum(len(t.split()) for t in texts)
        return 200, {"object": "list", "data": data, "model": self.embed_model,
                     "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    # ------------------------------------------------------------------ Batch API: files + batches routes
    def upload(self, content_type: str, data: bytes) -> dict:
        from email.parser import BytesParser

        msg = BytesParser().parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + data)
        content, name = b"", "upload.jsonl"
        for part in msg.get_payload():
            if part.get_param("name", header="content-disposition") == "file":
                content, name = part.get_payload(decode=True), part.get_filename() or name
        with self._lock:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = content
        return {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "filename": name, "purpose": "batch", "status": "processed"}

    def batch_object(self, b: dict) -> dict:
        return {k: v for k, v in b.items() if not k.startswith("_")}

    def create_batch(self, body: dict) -> dict:
        with self._lock:
            batch_id = f"batch_{len(self.batches) + 1}"
            n = len(self.files[body["input_file_id"]].splitlines())
            self.batches[batch_id] = {
                "id": batch_id, "object": "batch", "endpoint": body["endpoint"], "errors": None,
                "input_file_id": body["input_file_id"], "completion_window": body["completion_window"],
                "status": "validating", "created_at": int(time.time()), "output_file_id": None,
                "error_file_id": None, "request_counts": {"total": n, "completed": 0, "failed": 0},
                "metadata": body.get("metadata"), "_polls": 0}
        return self.batch_object(self.batches[batch_id])

    def poll_batch(self, batch_id: str) -> dict:
        b = self.batches[batch_id]
        b["_polls"] += 1
        if b["status"] != "completed" and b["_polls"] >= self.batch_polls_to_finish:
            out, failed = [], 0
            for line in self.files[b["input_file_id"]].decode().splitlines():
                req = json.loads(line)
                fault = self.next_fault()
                with self._lock:
                    self.served[fault or "ok"] += 1
                if fault == "drop":  # the batch lost this request: no line at all
                    continue
                if fault and fault.isdigit():
                    failed += 1
                    out.append({"id": f"r-{len(out)}", "custom_id": req["custom_id"], "error": None,
                                "response": {"status_code": int(fault), "body": {"error": {"message": "injected"}}}})
                    continue
                content = self.content_for(req["body"], fault)
                out.append({"id": f"r-{len(out)}", "custom_id": req["custom_id"], "error": None,
                            "response": {"status_code": 200, "body": self.completion(req["body"], content)}})
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = "".join(json.dumps(o) + "\n" for o in out).encode()
            b.update(status="completed", output_file_id=file_id,
                     request_counts={"total": b["request_counts"]["total"], "completed": len(out) - failed,
                                     "failed": failed})
        elif b["status"] == "validating":
            b["status"] = "in_progress"
        return self.batch_object(b)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, code, payload, headers=None):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _take(self, body) -> str | None:
                """The next fault of the queue for this request (None: answer it), the request recorded."""
                fault = server.next_fault()
                with server._lock:
                    server.bodies.append(body)
                    server.headers.append(dict(self.headers))
                    server.served[fault or "ok"] += 1
                if server.delay:
                    time.sleep(server.delay)
                return fault

            def _send_status(self, fault: str) -> None:
                """An injected HTTP error (a 429 with Retry-After: 0)."""
                self._send(int(fault), {"error": {"message": f"injected {fault}", "type": "server_error"}},
                           {"Retry-After": "0"} if fault == "429" else None)

            def do_GET(self):
                m = re.search(r"/batches/([^/]+)$", self.path)
                if m and m.group(1) in server.batches:
                    self._send(200, server.poll_batch(m.group(1)))
                    return
                m = re.search(r"/files/([^/]+)/content$", self.path)
                if m and m.group(1) in server.files:
                    self._send(200, server.files[m.group(1)])
                    return
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                data = self.rfile.read(length)
                if self.path.rstrip("/").endswith("/files"):
                    self._send(200, server.upload(self.headers.get("Content-Type", ""), data))
                    return
                body = json.loads(data or b"{}")
                if self.path.rstrip("/").endswith("/batches"):
                    self._send(200, server.create_batch(body))
                    return
                if self.path.rstrip("/").endswith("/embeddings"):
                    if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                        self._send(401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}})
                        return
                    fault = self._take(body)
                    if fault and fault.isdigit():
                        self._send_status(fault)
                    elif fault == "timeout":
                        time.sleep(server.hang_seconds)
                    elif fault == "reset":
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                        self.connection.close()
                    else:
                        self._send(*server.embeddings(body, fault))
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "not found"}})
                    return
                fault = self._take(body)
                if fault and fault.isdigit():
                    self._send_status(fault)
                    return
                if fault == "timeout":
                    time.sleep(server.hang_seconds)
                    return
                if fault == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.connection.close()
                    return
                self._send(200, server.completion(body, server.content_for(body, fault), fault))

        return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--faults", default="")
    ap.add_argument("--logprobs", action="store_true")
    ap.add_argument("--embed-dim", type=int, default=8)
    args = ap.parse_args()
    faults = [f for f in args.faults.split(",") if f]
    with FakeOpenAI(faults, delay=args.delay, logprobs=args.logprobs, embed_dim=args.embed_dim) as srv:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(srv.port))
        os.replace(tmp, args.port_file)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    sys.exit(main())
