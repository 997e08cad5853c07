"""The endpoint encoder (``--encoder openai:MODEL``) against real HTTP servers on 127.0.0.1.

Two servers: ``python -m projector.embed.serve`` (the bundled all-MiniLM-L6-v2 over /v1/embeddings, started
as a subprocess and stopped by its PID) for the vectors themselves, and tests/openai_server.py (hash vectors,
injected faults) for what can go wrong. Our side is the real ``openai`` client (base64 replies).
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from openai_server import FakeOpenAI
from projector.embed import embed
from projector.embed import endpoint as E
from projector.errors import DataError, EncoderError

REPO = Path(__file__).parents[2]
KEY = "sk-test-SECRET-4242"


def _unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _fake(srv, **kw) -> str:
    """Configure ``openai:fake-embed`` at ``srv`` (fast retries) and return the encoder string."""
    E.configure("openai:fake-embed", base_url=srv.base_url, **{"backoff": 0.01, "request_texts": 4, **kw})
    return "openai:fake-embed"


@pytest.fixture(scope="module")
def minilm_server(tmp_path_factory):
    """The bundled MiniLM served by projector.embed.serve, requiring the key in SERVE_KEY."""
    port_file = tmp_path_factory.mktemp("serve") / "port"
    env = {**os.environ, "PYTHONPATH": str(REPO), "SERVE_KEY": KEY}
    proc = subprocess.Popen([sys.executable, "-m", "projector.embed.serve", "--port", "0", "--port-file",
                             str(port_file), "--api-key-env", "SERVE_KEY"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(1200):
            if port_file.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert port_file.exists(), proc.stderr.read().decode()[-2000:]
        yield f"http://127.0.0.1:{port_file.read_text()}/v1"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_served_minilm_gives_the_in_process_vectors_and_a_second_run_sends_nothing(minilm_server, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    E.configure("openai:all-MiniLM-L6-v2", base_url=minilm_server, request_texts=8)
    texts = [f"How do I read line {i} of a file in Perl?" for i in range(20)] + ["", "déjà vu ✓"]
    http = embed(texts, "openai:all-MiniLM-L6-v2", cache_dir=tmp_path / "c", template="query: {text}")
    local = embed(texts, None, cache_dir=False, template="query: {text}")
    assert http.shape == (22, 384)
    assert np.abs(http - local).max() < 1e-5
    # The second run is served from the cache: with the endpoint unreachable it still answers.
    E.configure("openai:all-MiniLM-L6-v2", base_url="http://127.0.0.1:9/v1")
    again = embed(texts, "openai:all-MiniLM-L6-v2", cache_dir=tmp_path / "c", template="query: {text}")
    np.testing.assert_array_equal(again, http)


def test_wrong_key_and_unknown_model_are_one_line_naming_the_fix(minilm_server, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-777")
    E.configure("openai:all-MiniLM-L6-v2", base_url=minilm_server)
    with pytest.raises(EncoderError, match="OPENAI_API_KEY") as e:
        embed(["a"], "openai:all-MiniLM-L6-v2", cache_dir=tmp_path / "c")
    assert "sk-wrong-key-777" not in str(e.value)
    monkeypatch.setenv("MY_KEY", KEY)
    E.configure("openai:no-such-model", base_url=minilm_server, api_key_env="MY_KEY")
    with pytest.raises(EncoderError, match="no-such-model"):
        embed(["a"], "openai:no-such-model", cache_dir=tmp_path / "c")


def test_unreachable_endpoint_fails_fast_naming_the_flag(tmp_path):
    E.configure("openai:m", base_url="http://127.0.0.1:9/v1", backoff=0.01)
    t0 = time.time()
    with pytest.raises(EncoderError, match="cannot reach .*--encoder-base-url"):
        embed(["a", "b"], "openai:m", cache_dir=tmp_path / "c")
    assert time.time() - t0 < 10


def test_transient_faults_and_bad_replies_are_survived(tmp_path):
    faults = [None, "429", "500", "garbage", "dim", "count", "nan", "reset"]  # the first request: the dimension probe
    with FakeOpenAI(faults) as srv:
        enc = _fake(srv, concurrency=2)
        texts = [f"text {i}" for i in range(30)]
        x = embed(texts, enc, cache_dir=tmp_path / "c")
        np.testing.assert_allclose(x, _unit([srv.vector(t) for t in texts]), atol=1e-6)
        assert all(srv.served[f] == 1 for f in faults if f), srv.served
        assert all(b.get("encoding_format") == "base64" for b in srv.bodies)  # the openai client's default


def test_a_persistently_wrong_dimension_is_an_error_and_keeps_the_cache(tmp_path):
    with FakeOpenAI([None] + ["dim"] * 5) as srv:
        with pytest.raises(EncoderError, match="7-d vectors, expected 8"):
            embed(["a", "b"], _fake(srv), cache_dir=tmp_path / "c")
    with FakeOpenAI() as srv:
        embed(["a", "b"], _fake(srv), cache_dir=tmp_path / "c")
    with FakeOpenAI(embed_dim=6) as srv:  # another model under the same name: refused, the 8-d cache kept
        with pytest.raises(DataError, match="6-d vectors .* holds 8-d"):
            embed(["c"], _fake(srv), cache_dir=tmp_path / "c")
    with FakeOpenAI() as srv:
        embed(["a", "b"], _fake(srv), cache_dir=tmp_path / "c")
        assert srv.requests == 0


def test_an_interrupted_run_resumes_without_embedding_anything_twice(tmp_path):
    texts = [f"passage {i}" for i in range(40)]
    with FakeOpenAI([None] * 5 + ["401"]) as srv:  # the probe, 4 replies of 4 texts, then a refused key
        with pytest.raises(EncoderError, match="key was refused"):
            embed(texts, _fake(srv, concurrency=1), cache_dir=tmp_path / "c")
        first = sum(srv.embedded.values())
    with FakeOpenAI() as srv:
        embed(texts, _fake(srv), cache_dir=tmp_path / "c")
        srv.embedded.pop("dimension probe")  # (one short request per process when the dimension is native)
        assert first == 17 and sum(srv.embedded.values()) == 40 - 16  # only the 24 never answered are sent
        assert max(srv.embedded.values()) == 1


def test_a_request_past_encoder_timeout_is_retried_and_the_flag_reaches_the_spec(tmp_path, capsys):
    """--encoder-timeout: a reply slower than it is abandoned and asked again (a hung server costs the time-out,
    not forever); below 1 s it is refused like the other tuning flags."""
    with FakeOpenAI([None, "timeout"], hang_seconds=4) as srv:  # the probe, then one request that hangs
        t0 = time.time()
        x = embed([f"t{i}" for i in range(4)], _fake(srv, timeout=1), cache_dir=tmp_path / "c")
        assert time.time() - t0 < 3.5 and srv.served["timeout"] == 1 and x.shape == (4, 8)
    from projector.evaluate.stage import parse_args
    from projector.train.stage import main

    cfg = parse_args(["--beir", str(tmp_path), "--encoder", "openai:m", "--encoder-base-url", "http://127.0.0.1:9/v1",
                      "--encoder-timeout", "300"])
    assert cfg.encoder_timeout == 300 and E.spec_of("openai:m").timeout == 300
    assert E.configure("openai:m").timeout == 120  # the default
    assert main(["--pairs", str(tmp_path), "--out", str(tmp_path / "m"), "--encoder", "openai:m",
                 "--encoder-timeout", "0"]) == 2
    assert "--encoder-timeout must be >= 1" in capsys.readouterr().err


def test_texts_go_out_longest_first_so_a_request_holds_similar_lengths(tmp_path):
    """A server that pads a request to its longest text wastes little; the vectors still come back in order."""
    texts = ["x" * n for n in (5, 300, 40, 2, 120, 41, 7, 299)]
    with FakeOpenAI() as srv:
        x = embed(texts, _fake(srv, request_texts=2), cache_dir=tmp_path / "c")
        sent = [b["input"] for b in srv.bodies if b["input"] != ["dimension probe"]]
    assert sorted([len(t) for t in r] for r in sent) == [[5, 2], [40, 7], [120, 41], [300, 299]]  # (any arrival order)
    np.testing.assert_allclose(x, _unit([srv.vector(t) for t in texts]), atol=1e-6)


def test_requests_are_batched_by_count_and_by_tokens():
    texts = ["x" * 40] * 10  # 11 estimated tokens each
    assert [len(r) for r in E.request_batches(texts, 4, 10_000)] == [4, 4, 2]
    assert [len(r) for r in E.request_batches(texts, 100, 30)] == [2] * 5
    assert [len(r) for r in E.request_batches(["x" * 400], 4, 10)] == [1]  # too long alone: still sent


def _train(pairs, out, srv, *more):
    from projector.train.stage import main

    return main(["--pairs", str(pairs), "--out", str(out), "--encoder", "openai:fake-embed", "--encoder-base-url",
                 srv.base_url, "--epochs", "2", "--batch-size", "8", "--threads", "1", *more])


def test_train_evaluate_load_through_the_endpoint(tmp_path, monkeypatch):
    import projector
    from test_train import make_qa_pairs
    from projector.evaluate.stage import main as evaluate

    pairs = make_qa_pairs(tmp_path / "qa")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeOpenAI(api_key=KEY) as srv:
        assert _train(pairs, tmp_path / "m", srv) == 0
        sent = srv.requests
        assert sent > 0 and not (tmp_path / "m" / "sentence-transformers").exists()
        assert _train(pairs, tmp_path / "m2", srv) == 0
        assert srv.requests == sent  # the second training run embeds nothing
        meta = json.loads((tmp_path / "m" / "projector.json").read_text())
        assert meta["encoder"] == "openai:fake-embed" and meta["encoder_source"] == "openai:fake-embed"
        assert meta["encoder_endpoint"] == {"base_url": srv.base_url, "dimensions": None,
                                            "api_key_env": "OPENAI_API_KEY"}
        assert evaluate(["--model", str(tmp_path / "m"), "--pairs", str(pairs), "--bootstrap", "20"]) == 0
        # Production: a fresh process knows the endpoint only from projector.json.
        fresh = subprocess.run([sys.executable, "-c", "import json, sys, projector; p = projector.load(sys.argv[1]); "
                                "print(json.dumps(p.encode_queries(['a catchy tune']).tolist()))", str(tmp_path / "m")],
                               env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
        assert fresh.returncode == 0, fresh.stderr
        q = np.array(json.loads(fresh.stdout.splitlines()[-1]))
        p = projector.load(tmp_path / "m")
        np.testing.assert_allclose(q, p.project_queries(_unit([srv.vector("a catchy tune")])), atol=1e-5)
    files = [f for f in tmp_path.rglob("*") if f.is_file()] + [f for f in Path(os.environ["PROJECTOR_CACHE_DIR"]).rglob("*") if f.is_file()]
    assert not [f for f in files if KEY.encode() in f.read_bytes()]


def test_bad_endpoint_settings_exit_2_with_one_line(tmp_path, capsys):
    from test_train import make_qa_pairs

    pairs = make_qa_pairs(tmp_path / "qa")
    capsys.readouterr()
    with FakeOpenAI() as srv:
        from projector.train.stage import main

        code = main(["--pairs", str(pairs), "--out", str(tmp_path / "m"), "--encoder", "openai:nope",
                     "--encoder-base-url", srv.base_url])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "'nope'" in err[0] and "--encoder" in err[0], err
    from projector.evaluate.stage import main as evaluate

    assert evaluate(["--pairs", str(pairs), "--encoder-dimensions", "8"]) == 2
    assert "need --encoder openai:MODEL" in capsys.readouterr().err


def test_kill_9_mid_embedding_then_the_same_command_pays_for_one_request_at_most(tmp_path):
    """The CLI in a subprocess, killed with SIGKILL while embedding; the same command then finishes."""
    from test_train import make_qa_pairs

    pairs = make_qa_pairs(tmp_path / "qa")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": KEY, "PROJECTOR_CACHE_DIR": str(tmp_path / "c")}
    with FakeOpenAI(delay=0.1, api_key=KEY) as srv:
        cmd = [sys.executable, "-m", "projector", "train", "--pairs", str(pairs), "--out", str(tmp_path / "m"),
               "--encoder", "openai:fake-embed", "--encoder-base-url", srv.base_url, "--encoder-concurrency", "1",
               "--encoder-request-texts", "4", "--epochs", "2", "--batch-size", "8", "--threads", "1"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while sum(srv.embedded.values()) < 21 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        first_log = proc.communicate()[0]
        before = srv.embedded.copy()
        again = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        assert again.returncode == 0, again.stdout.decode()[-2000:]
    twice = [t for t, n in srv.embedded.items() if n > 1 and t != "dimension probe"]
    assert len(twice) <= 4 and max(before.values()) == 1, twice  # at most the one request in flight
    assert all(n <= 2 for n in srv.embedded.values())
    assert (tmp_path / "m" / "projector.json").is_file()
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert KEY.encode() not in first_log + again.stdout
    assert not [f for f in files if KEY.encode() in f.read_bytes()]
