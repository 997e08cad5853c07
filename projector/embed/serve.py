"""An OpenAI-compatible embeddings server for a sentence-transformers folder: ``POST /v1/embeddings``.

    python -m projector.embed.serve                          # the bundled all-MiniLM-L6-v2 on 127.0.0.1:8008
    python -m projector.embed.serve FOLDER --port 8010 --model-name my-model --api-key-env MY_KEY
    projector train --encoder openai:all-MiniLM-L6-v2 --encoder-base-url http://127.0.0.1:8008/v1 ...

What it is for: a model you have as a folder, served to machines that should not load torch, or reached the
same way as a hosted one (the tests and the endpoint benchmark use it). It answers ``encoding_format`` float
and base64 (the ``openai`` client's default), ``input`` as a string or a list of strings, ``GET /v1/models``;
with ``--api-key-env VAR`` it refuses requests without ``Authorization: Bearer $VAR`` (401); an unknown model
is a 404. Requests are encoded one at a time (one model, all cores), after a tokenizer pass that counts
``usage.prompt_tokens``. Standard library HTTP server + sentence-transformers; no other dependency.
Stop it with Ctrl-C or SIGTERM; ``--port 0`` picks a free port, written to ``--port-file`` when given.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


class EmbeddingServer:
    """``model`` (anything with ``encode``) served under ``name`` on ``host:port`` (0: a free port)."""

    def __init__(self, model, name: str, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None,
                 batch_size: int = 64):
        self.model, self.name, self.api_key, self.batch_size = model, name, api_key, batch_size
        self._lock = threading.Lock()  # one encode at a time: torch already uses every core for one batch
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://{host}:{self.port}/v1"

    def embeddings(self, body: dict) -> tuple[int, dict]:
        """(status, reply) of one ``/v1/embeddings`` request body."""
        if body.get("model") not in (self.name, None):
            return 404, {"error": {"message": f"model {body.get('model')!r} not found; this server has "
                                              f"{self.name!r}", "type": "invalid_request_error",
                                   "code": "model_not_found"}}
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return 400, {"error": {"message": "input must be a string or a non-empty list of strings",
                                   "type": "invalid_request_error"}}
        if body.get("dimensions") not in (None, self.dim):
            return 400, {"error": {"message": f"this model has {self.dim} dimensions and cannot give "
                                              f"{body['dimensions']}", "type": "invalid_request_error"}}
        with self._lock:
            vecs = np.asarray(self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                                show_progress_bar=False), dtype="<f4")  # (n, d)
            tokens = self._tokens(texts)
        b64 = body.get("encoding_format") == "base64"
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(v.tobytes()).decode() if b64 else v.tolist()}
                for i, v in enumerate(vecs)]
        return 200, {"object": "list", "data": data, "model": self.name,
                     "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @property
    def dim(self) -> int:
        fn = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(fn())

    def _tokens(self, texts: list[str]) -> int:
        tok = getattr(self.model, "tokenizer", None)
        if tok is None:
            return sum(len(t.split()) for t in texts)
        limit = getattr(self.model, "max_seq_length", None) or 512
        return int(sum(min(len(ids), limit) for ids in tok(texts, add_special_tokens=True)["input_ids"]))

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: one line per request would drown the caller's output
                pass

            def _send(self, code: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    self._send(401, {"error": {"message": "invalid API key", "type": "authentication_error"}})
                    return False
                return True

            def do_GET(self):
                if not self._authorised():
                    return
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": server.name, "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not self._authorised():
                    return
                if not self.path.rstrip("/").endswith("/embeddings"):
                    self._send(404, {"error": {"message": f"no route {self.path}; this server has /v1/embeddings"}})
                    return
                try:
                    request = json.loads(body or b"{}")
                except ValueError:
                    self._send(400, {"error": {"message": "the body is not JSON", "type": "invalid_request_error"}})
                    return
                self._send(*server.embeddings(request if isinstance(request, dict) else {}))

        return Handler

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m projector.embed.serve", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", default=None, help="sentence-transformers folder (default: the bundled "
                                                            "all-MiniLM-L6-v2)")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    ap.add_argument("--port", type=int, default=8008, help="port (0: a free one; default: 8008)")
    ap.add_argument("--port-file", default=None, help="write the port here once listening")
    ap.add_argument("--model-name", default=None, help="the model name clients ask for (default: the folder's "
                                                       "name; all-MiniLM-L6-v2 for the bundled model)")
    ap.add_argument("--api-key-env", default=None, help="require the key in this environment variable")
    ap.add_argument("--device", default=None, help="torch device (default: sentence-transformers' choice)")
    ap.add_argument("--batch-size", type=int, default=64, help="encoder batch size (default: 64)")
    args = ap.parse_args(argv)

    from projector.embed.encoder import load_encoder

    model = load_encoder(args.folder, args.device)
    name = args.model_name or (os.path.basename(os.path.normpath(args.folder)) if args.folder else "all-MiniLM-L6-v2")
    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not key:
        print(f"projector.embed.serve: error: {args.api_key_env} is not set", file=sys.stderr)
        return 2
    server = EmbeddingServer(model, name, args.host, args.port, key, args.batch_size)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(server.port))
        os.replace(tmp, args.port_file)
    print(f"projector.embed.serve: {name} ({server.dim}-d) at {server.base_url}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
