"""projector.embed and what it stands on: the bundled encoder offline and identities (projector.embed.encoder), the
content-keyed memory-mapped cache (projector.embed.cache), streaming output (out=) and sentence-transformers'
multi-process pool (projector.embed.pool)."""
import hashlib
import logging
import os

import numpy as np
import pytest

import projector.embed.cache as cache_mod
import projector.embed.embedding as embed_mod
import projector.embed.pool as pool_mod
from projector.embed.cache import cache_keys, clear_open_caches, open_cache
from projector.embed.embedding import embed
from projector.embed.encoder import BUNDLED_NAME, apply_template, encoder_identity, encoder_source
from projector.errors import DataError, ProjectorError
from projector.embed.pool import PoolPlan

TEXTS = ["How do I open a file?", "Use open() with a context manager.", "Lists are mutable sequences."]
FAKE = "fake-encoder"  # not a folder: its identity is the name itself; embed's load_encoder is replaced below


def fake_vec(text: str, d: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(d).astype(np.float32)
    return v / np.linalg.norm(v)


class FakeModel:
    """Stands in for a SentenceTransformer: deterministic vectors per text, records what it encoded."""

    def __init__(self, d=8):
        self.d, self.encoded = d, []

    def get_embedding_dimension(self):
        return self.d

    def encode(self, texts, **kwargs):
        self.encoded.extend(texts)
        return np.stack([fake_vec(t, self.d) for t in texts])


@pytest.fixture
def fake(monkeypatch):
    model = FakeModel()
    monkeypatch.setattr(embed_mod, "load_encoder", lambda encoder=None, device=None: model)
    return model


def no_encoder(*a, **k):
    raise AssertionError("the cache should have answered")


def shard_dirs(root):
    return sorted(p.parent for p in root.rglob("shard-*/vectors.npy"))


def test_bundled_identity_is_stable():
    assert encoder_identity(None) == BUNDLED_NAME
    assert encoder_identity(encoder_source(None)) == BUNDLED_NAME  # the same weights by folder


def test_embed_shapes_normalised_and_cached(tmp_path, monkeypatch):
    x = embed(TEXTS, cache_dir=tmp_path, show_progress=False)
    assert x.shape == (3, 384) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    (shard,) = shard_dirs(tmp_path)
    assert np.load(shard / "vectors.npy", mmap_mode="r").shape == (3, 384)  # plain .npy: memory-mappable
    assert not list(tmp_path.rglob("*.npz"))

    monkeypatch.setattr(embed_mod, "load_encoder", no_encoder)
    clear_open_caches()  # a new process: reads the shard from disk
    y = embed(TEXTS[::-1], cache_dir=tmp_path, show_progress=False)  # order does not matter: keyed on content
    assert np.array_equal(x[::-1], y)


def test_template_is_part_of_the_key(tmp_path):
    plain = embed(TEXTS[:1], cache_dir=tmp_path, show_progress=False)
    tpl = embed(TEXTS[:1], template="question: {text}", cache_dir=tmp_path, show_progress=False)
    assert not np.allclose(plain, tpl)
    assert apply_template(["x"], "q: {text} !") == ["q: x !"]
    with pytest.raises(DataError, match="placeholder"):
        apply_template(["x"], "no placeholder")


def test_two_workers_equal_one(monkeypatch):
    """sentence-transformers' pool (2 CPU processes) gives the single-process vectors, and is stopped."""
    texts = [f"{w} number {i} is about {'files ' * (i % 5)}python" for i, w in
             enumerate(["sentence", "question", "passage", "note"] * 10)]
    one = embed(texts, cache_dir=False, workers=1, batch_size=8, show_progress=False)
    monkeypatch.setattr(pool_mod, "POOL_MIN", 0)
    pools = []
    stop = PoolPlan.stop

    def spy(plan):
        if plan.pool is not None:
            pools.append((plan.targets(), [p.pid for p in plan.pool["processes"]]))
        stop(plan)

    monkeypatch.setattr(PoolPlan, "stop", spy)
    two = embed(texts, cache_dir=False, workers=2, batch_size=8, show_progress=False)
    assert two.shape == one.shape == (40, 384)
    np.testing.assert_allclose(two, one, atol=1e-5)
    (targets, pids), = pools
    assert targets == ["cpu", "cpu"] and len(pids) == 2
    for pid in pids:  # stopped (and reaped) when embed returned
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_pool_plan_devices(monkeypatch):
    plan = PoolPlan
    assert plan(None, 3, None, "cpu").targets() == ["cpu"] * 3
    assert plan(None, 1, None, None).targets() is None
    assert plan(None, None, ["cuda:0", "cuda:1"], None).targets() == ["cuda:0", "cuda:1"]
    assert plan(None, 4, ["cuda:0", "cuda:1"], None).targets() == ["cuda:0", "cuda:1"] * 2
    assert plan(None, None, None, "cpu").targets() is None  # auto: a pool only for several CUDA devices
    with pytest.raises(ProjectorError, match=">= 1"):
        plan(None, 0, None, None)


def test_out_streams_to_a_memmap_equal_to_the_in_memory_result(tmp_path, fake, monkeypatch):
    texts = [f"text {i}" for i in range(5000)] + ["text 7", "text 4999"]  # duplicates too
    cache = tmp_path / "cache"
    x = embed(texts, FAKE, cache_dir=cache, show_progress=False)  # fills the cache (fake vectors)
    assert np.allclose(x[7], fake_vec("text 7", 8)) and np.array_equal(x[5000], x[7])
    assert shard_dirs(cache) and not list(cache.rglob("*.npz"))

    monkeypatch.setattr(embed_mod, "load_encoder", no_encoder)
    monkeypatch.setattr(embed_mod, "GATHER_ROWS", 700)  # several chunks
    out = tmp_path / "x.npy"
    y = embed(texts, FAKE, cache_dir=cache, show_progress=False, out=out)
    assert isinstance(y, np.memmap) and y.flags.writeable  # copy-on-write: torch.from_numpy takes it silently
    assert np.array_equal(y, x)
    assert np.array_equal(np.load(out), x) and (tmp_path / "x.npy.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    # the same call again: the finished file is reused without reading the cache
    opened = []
    monkeypatch.setattr(embed_mod, "open_cache", lambda *a: opened.append(a) or open_cache(*a))
    z = embed(texts, FAKE, cache_dir=cache, show_progress=False, out=out)
    assert isinstance(z, np.memmap) and np.array_equal(z, x) and not opened
    # other texts into the same out: rewritten, not reused
    w = embed(texts[:10], FAKE, cache_dir=cache, show_progress=False, out=out)
    assert opened and w.shape == (10, 8) and np.array_equal(w, x[:10])


def test_out_without_cache_and_empty(tmp_path, fake):
    y = embed(TEXTS, FAKE, cache_dir=False, show_progress=False, out=tmp_path / "y.npy")
    assert np.allclose(y, np.stack([fake_vec(t, 8) for t in TEXTS]))
    e = embed([], FAKE, cache_dir=tmp_path / "c", show_progress=False, out=tmp_path / "e.npy")
    assert e.shape == (0, 8) and np.load(tmp_path / "e.npy").shape == (0, 8)


def test_old_npz_shards_are_converted(tmp_path, fake, monkeypatch):
    """A cache written by the previous version (shard-*.npz) still answers, and is rewritten as .npy."""
    cache = tmp_path / "cache"
    folder = open_cache(cache, FAKE).dir
    keys = cache_keys(FAKE, None, TEXTS).view(np.uint8).reshape(-1, 16)
    old = np.stack([fake_vec(t, 8) for t in TEXTS])
    np.savez(folder / "shard-0123abcd.npz", keys=keys, vectors=old)
    clear_open_caches()
    monkeypatch.setattr(embed_mod, "load_encoder", no_encoder)
    assert np.array_equal(embed(TEXTS, FAKE, cache_dir=cache, show_progress=False), old)
    assert not list(folder.glob("*.npz")) and (folder / "shard-0123abcd" / "vectors.npy").exists()


def _write_shard(folder, name, keys, vectors):
    (folder / name).mkdir()
    np.save(folder / name / "keys.npy", keys)
    np.save(folder / name / "vectors.npy", vectors)


@pytest.mark.parametrize("fault", ["dimension", "nan", "count", "truncated", "inf"])
def test_bad_shard_is_ignored_with_a_warning_and_recomputed(tmp_path, fake, caplog, fault):
    cache = tmp_path / "cache"
    good = ["kept 1", "kept 2"]
    embed(good, FAKE, cache_dir=cache, show_progress=False)  # a valid shard (and meta.json: d = 8)
    folder = open_cache(cache, FAKE).dir
    keys = cache_keys(FAKE, None, TEXTS).view(np.uint8).reshape(-1, 16)
    vectors = np.stack([fake_vec(t, 8) for t in TEXTS])
    if fault == "dimension":
        vectors = vectors[:, :5].copy()
    elif fault in ("nan", "inf"):
        vectors[1, 3] = np.nan if fault == "nan" else np.inf
    elif fault == "count":
        keys = keys[:2]
    _write_shard(folder, "shard-bad", keys, vectors)
    if fault == "truncated":
        path = folder / "shard-bad" / "vectors.npy"
        path.write_bytes(path.read_bytes()[:-10])
    clear_open_caches()  # a new process
    fake.encoded.clear()
    with caplog.at_level(logging.WARNING, logger="projector.embed.cache"):
        x = embed(TEXTS + good, FAKE, cache_dir=cache, show_progress=False)
    assert np.isfinite(x).all() and np.allclose(x, np.stack([fake_vec(t, 8) for t in TEXTS + good]), atol=1e-6)
    assert sorted(fake.encoded) == sorted(TEXTS)  # the bad shard's texts, encoded again; the good ones not
    assert any("shard-bad" in r.getMessage() and "ignoring" in r.getMessage() for r in caplog.records)


def test_encoder_dimension_overrides_a_wrong_cache(tmp_path, fake, caplog):
    """A cache folder (without meta.json) whose shards all have another dimension than the encoder gives:
    found out as soon as the encoder is loaded for a miss, and recomputed."""
    cache = tmp_path / "cache"
    folder = open_cache(cache, FAKE).dir
    keys = cache_keys(FAKE, None, TEXTS).view(np.uint8).reshape(-1, 16)
    _write_shard(folder, "shard-other", keys, np.ones((3, 5), np.float32))
    clear_open_caches()
    with caplog.at_level(logging.WARNING, logger="projector.embed.cache"):
        x = embed(TEXTS[:2] + ["new"], FAKE, cache_dir=cache, show_progress=False)
    assert x.shape == (3, 8) and "shard-other" in caplog.text
    assert sorted(fake.encoded) == sorted(TEXTS[:2] + ["new"])


def test_many_shards_are_merged(tmp_path, fake, monkeypatch):
    monkeypatch.setattr(cache_mod, "MAX_SHARDS", 4)
    monkeypatch.setattr(cache_mod, "MERGE_ROWS", 3)  # the merge streams in several chunks
    monkeypatch.setattr(embed_mod, "GATHER_ROWS", 3)
    cache = tmp_path / "cache"
    texts = [f"t{i}" for i in range(14)]
    for i in range(0, 14, 2):
        embed(texts[i:i + 2], FAKE, cache_dir=cache, show_progress=False)
    assert len(shard_dirs(cache)) <= 4
    clear_open_caches()
    monkeypatch.setattr(embed_mod, "load_encoder", no_encoder)
    x = embed(texts, FAKE, cache_dir=cache, show_progress=False)
    assert np.allclose(x, np.stack([fake_vec(t, 8) for t in texts]), atol=1e-6)


@pytest.mark.parametrize("module", ["projector.embed", "projector.embed.encoder", "projector.embed.cache",
                                    "projector.embed.npy", "projector.embed.pool"])
def test_import_does_not_load_torch(module):
    import subprocess
    import sys

    code = f"import sys, {module}; print('torch' in sys.modules, 'sentence_transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["False", "False"]


def test_a_key_in_two_shards_is_read_once(tmp_path, fake, monkeypatch):
    """Two processes that encoded the same texts leave them in two shards: one index entry each."""
    cache = tmp_path / "cache"
    c = open_cache(cache, FAKE)
    keys = cache_keys(FAKE, None, TEXTS)
    vecs = np.stack([fake_vec(t, 8) for t in TEXTS])
    c.put(keys, vecs)
    c.put(keys[::-1].copy(), vecs[::-1].copy())
    clear_open_caches()
    monkeypatch.setattr(embed_mod, "load_encoder", no_encoder)
    assert np.array_equal(embed(TEXTS, FAKE, cache_dir=cache, show_progress=False), vecs)
    assert len(open_cache(cache, FAKE)) == 3
