"""Property tests of projector.load on damaged artifacts and of the loaded projection on bad inputs.

From valid artifacts written by projector.train.export (d = 8, asymmetric and symmetric, no training needed),
hypothesis truncates and flips bytes of model.safetensors, deletes, adds and retypes fields of projector.json
and feeds arrays of any shape and value. The only outcomes allowed:

  - load raises projector.errors.ArtifactError whose message names the damaged file, or
  - the mutation was harmless (it touched nothing the sha256 of the weights or the checks cover) and the
    projection loads and works: finite scores of the right shape, probabilities in [0, 1];
  - on inputs: finite (n, k) output, or a DataError naming the shape or the NaN/inf.

Never another exception type, never a crash.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import projector
from projector.errors import ArtifactError, DataError, ProjectorError

D = 8
SETTINGS = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
                    | st.text(max_size=12), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                    max_leaves=6)


@dataclass
class _Pairs:
    path: str = "pairs"
    task: str = "qa"
    manifest: dict = None
    fingerprint: str = "0" * 16


def build(out: Path, mode: str, rank: int) -> Path:
    import torch

    from projector.train.export import write_artifact
    from projector.train.projection import Projection
    from projector.train.stage import TrainConfig

    g = torch.Generator().manual_seed(0)
    model = Projection(D, rank, mode)
    with torch.no_grad():
        for p in (model.W_q, model.W_a):
            if p is not None:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    cfg = TrainConfig(pairs="pairs", out=str(out), sentence_transformers=False)
    summary = {"selected": "trained", "warning": None, "validation": {}, "baseline": "cosine", "best_epoch": 1,
               "epochs_run": 1, "train_pairs": 1, "train_seconds": 0.0, "pairs_per_second": None, "device": "cpu",
               "val_ndcg@10_folded": None, "test": None}
    write_artifact(out, model, cfg=cfg, mode=mode, pairs=_Pairs(manifest={"rewrite": None}), summary=summary,
                   encoder_identity="test/encoder-d8")
    return out


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    return {"asymmetric": build(root / "asym", "asymmetric", D), "symmetric": build(root / "sym", "symmetric", 4)}


@pytest.fixture
def scratch(tmp_path):
    """A fresh copy of an artifact per hypothesis example (function-scoped fixtures persist across examples)."""
    n = [0]

    def copy(src: Path) -> Path:
        n[0] += 1
        dst = tmp_path / f"c{n[0]}"
        shutil.copytree(src, dst)
        return dst

    return copy


def works(p) -> None:
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(3, p.dim)), rng.normal(size=(5, p.dim))
    s, prob = p.score(q, d), p.probability(q, d)
    assert s.shape == prob.shape == (3, 5) and np.isfinite(s).all() and ((prob >= 0) & (prob <= 1)).all()
    assert p.project_queries(q).shape == (3, p.rank) and p.project_documents(d).shape == (5, p.rank)
    assert isinstance(p.templates, dict) and all(v is None or isinstance(v, str) for v in p.templates.values())
    assert p.normalize in ("both", "query", "none")
    repr(p)


def outcome(path: Path, damaged: str):
    """'loaded' (and it works) or 'refused' (ArtifactError naming ``damaged``); anything else fails the test."""
    try:
        p = projector.load(path)
    except ArtifactError as e:
        assert damaged in str(e), f"message does not name {damaged}: {e}"
        return "refused"
    works(p)
    return "loaded"


def unchecked(path: Path) -> None:
    """Drop the weights' sha256 from projector.json, so the safetensors parser and the checks meet the damage."""
    meta = json.loads((path / "projector.json").read_text())
    meta.pop("files")
    (path / "projector.json").write_text(json.dumps(meta))


# --------------------------------------------------------------------------------------- model.safetensors


@SETTINGS
@given(mode=st.sampled_from(["asymmetric", "symmetric"]), frac=st.floats(0, 1, exclude_max=True),
       checksum=st.booleans())
def test_truncated_weights_are_refused(artifacts, scratch, mode, frac, checksum):
    path = scratch(artifacts[mode])
    f = path / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[:int(frac * len(data))])
    if not checksum:
        unchecked(path)
    assert outcome(path, "model.safetensors") == "refused"


@SETTINGS
@given(mode=st.sampled_from(["asymmetric", "symmetric"]), checksum=st.booleans(), data=st.data())
def test_flipped_bytes_are_refused_or_harmless(artifacts, scratch, mode, checksum, data):
    path = scratch(artifacts[mode])
    f = path / "model.safetensors"
    original = f.read_bytes()
    raw = bytearray(original)
    header = 8 + int.from_bytes(raw[:8], "little")
    # half of the flips in the 8-byte length and the JSON header, where they do the most varied damage
    where = data.draw(st.lists(st.one_of(st.integers(0, header - 1), st.integers(0, len(raw) - 1)), min_size=1,
                               max_size=4))
    for i in where:
        raw[i] ^= data.draw(st.integers(1, 255))
    f.write_bytes(bytes(raw))
    if not checksum:
        unchecked(path)
    result = outcome(path, "model.safetensors")
    if checksum and bytes(raw) != original:  # two flips of one byte can cancel out
        assert result == "refused"  # the sha256 covers every byte


def test_weights_of_the_wrong_dtype_or_values_are_refused(artifacts, scratch):
    from safetensors.numpy import load_file, save_file

    for change, expect in ((lambda t: {**t, "W_q": t["W_q"].astype(np.int32)}, "dtype"),
                           (lambda t: {**t, "W_q": np.full_like(t["W_q"], np.nan)}, "NaN"),
                           (lambda t: {**t, "scale": -t["scale"]}, "scale"),
                           (lambda t: {k: v for k, v in t.items() if k != "W_a"}, "W_a"),
                           (lambda t: {**t, "M": t["M"][:4]}, "M")):
        path = scratch(artifacts["asymmetric"])
        unchecked(path)
        save_file(change(load_file(str(path / "model.safetensors"))), str(path / "model.safetensors"))
        with pytest.raises(ArtifactError, match=expect) as e:
            projector.load(path)
        assert "model.safetensors" in str(e.value)


# ----------------------------------------------------------------------------------------- projector.json


FIELDS = ["format", "format_version", "encoder", "encoder_source", "dim", "rank", "mode", "input_normalisation",
          "normalize", "scale", "bias", "templates", "rewrite", "task", "selected", "warning", "metrics", "folding",
          "training", "pairs", "sentence_transformers", "files"]


@pytest.mark.parametrize("files", [None, {}, {"model.safetensors": ""}, {"model.safetensors": "abc"}, "x"])
def test_a_files_field_that_would_switch_the_checksum_off_is_refused(artifacts, scratch, files):
    # Found by the property below: "files": null loaded the weights unchecked.
    path = scratch(artifacts["asymmetric"])
    meta = json.loads((path / "projector.json").read_text())
    (path / "projector.json").write_text(json.dumps({**meta, "files": files}))
    assert outcome(path, "projector.json") == "refused"


@SETTINGS
@given(mode=st.sampled_from(["asymmetric", "symmetric"]),
       edits=st.lists(st.tuples(st.sampled_from(FIELDS + ["extra", "zzz"]),
                                st.one_of(st.just("<delete>"), JSON)), min_size=1, max_size=4))
def test_edited_metadata_is_refused_or_harmless(artifacts, scratch, mode, edits):
    path = scratch(artifacts[mode])
    meta = json.loads((path / "projector.json").read_text())
    original = dict(meta)
    for key, value in edits:
        if value == "<delete>":
            meta.pop(key, None)
        else:
            meta[key] = value
    (path / "projector.json").write_text(json.dumps(meta))
    result = outcome(path, "projector.json")
    if result == "loaded":  # then every field the loader relies on still says what the weights are
        for key in ("format", "format_version", "dim", "rank", "mode"):
            assert meta[key] == original[key] and type(meta[key]) is type(original[key]), key
        if "files" in meta:
            assert meta["files"] == original["files"]


@SETTINGS
@given(version=JSON)
def test_any_format_version_but_1_is_refused(artifacts, scratch, version):
    path = scratch(artifacts["asymmetric"])
    meta = json.loads((path / "projector.json").read_text())
    meta["format_version"] = version
    (path / "projector.json").write_text(json.dumps(meta))
    if version == 1 and type(version) is int:
        assert outcome(path, "projector.json") == "loaded"
    else:
        with pytest.raises(ArtifactError, match="format_version") as e:
            projector.load(path)
        assert "projector.json" in str(e.value)


@SETTINGS
@given(mode=st.sampled_from(["asymmetric", "symmetric"]), dim=st.integers(-3, 20), rank=st.integers(-3, 20))
def test_dims_that_disagree_with_the_weights_are_refused(artifacts, scratch, mode, dim, rank):
    path = scratch(artifacts[mode])
    meta = json.loads((path / "projector.json").read_text())
    truth = (meta["dim"], meta["rank"])
    meta.update(dim=dim, rank=rank)
    (path / "projector.json").write_text(json.dumps(meta))
    if (dim, rank) == truth:
        assert outcome(path, "projector.json") == "loaded"
    else:
        with pytest.raises(ArtifactError) as e:
            projector.load(path)
        assert "projector.json" in str(e.value) or "model.safetensors" in str(e.value)


@SETTINGS
@given(text=st.one_of(st.binary(max_size=40).map(lambda b: b.decode("latin-1")), st.text(max_size=40)),
       raw=st.binary(max_size=40))
def test_garbage_metadata_files_are_refused(artifacts, scratch, text, raw):
    for content in (text.encode("utf-8"), raw, b"[" * 100_000, b"\xff\xfe{}"):
        path = scratch(artifacts["asymmetric"])
        (path / "projector.json").write_bytes(content)
        assert outcome(path, "projector.json") == "refused"


def test_unreadable_or_missing_files_are_refused(artifacts, scratch, tmp_path):
    path = scratch(artifacts["asymmetric"])
    (path / "model.safetensors").unlink()
    (path / "model.safetensors").mkdir()
    assert outcome(path, "model.safetensors") == "refused"
    path = scratch(artifacts["asymmetric"])
    (path / "projector.json").unlink()
    assert outcome(path, "projector.json") == "refused"
    with pytest.raises(ArtifactError, match="projector.json"):
        projector.load(tmp_path / "does-not-exist")


# ----------------------------------------------------------------------------------------- inputs


FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)


@SETTINGS
@given(arr=hnp.arrays(np.float32, st.one_of(st.tuples(st.integers(0, 6), st.just(D)), st.just((D,)),
                                            hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=10)),
                     elements=FLOATS),
       side=st.sampled_from(["queries", "documents"]))
def test_inputs_give_finite_projections_or_a_clear_error(artifacts, arr, side):
    p = projector.load(artifacts["asymmetric"])
    fn = p.project_queries if side == "queries" else p.project_documents
    good_shape = (arr.ndim == 2 and arr.shape[1] == D) or (arr.ndim == 1 and arr.shape[0] == D)
    try:
        z = fn(arr)
    except DataError as e:
        msg = str(e)
        if not good_shape:
            assert "shape" in msg and str(D) in msg, msg
        else:
            assert not np.isfinite(arr).all() and "NaN" in msg and "inf" in msg, msg
        return
    assert good_shape and np.isfinite(arr).all()
    assert z.shape == (arr.reshape(-1, D).shape[0], p.rank) and np.isfinite(z).all()
    # normalize "both": every row that is not (numerically) zero comes out with length 1, however large
    big = np.abs(arr.reshape(-1, D).astype(np.float64)).max(axis=1, initial=0) > 1e-6
    assert np.allclose(np.linalg.norm(z[big], axis=1), 1, atol=1e-4)


@pytest.mark.parametrize("bad", [[["a"] * D], "text", None, {"x": 1}, [[1.0] * D, [1.0] * (D - 1)],
                                 np.ones((2, D), dtype=complex)])
def test_inputs_that_are_not_numeric_arrays(artifacts, bad):
    p = projector.load(artifacts["asymmetric"])
    with pytest.raises(DataError, match="query embeddings"):
        p.project_queries(bad)
    with pytest.raises(DataError):
        p.score(bad, np.ones((2, D)))


def test_score_names_the_side_and_the_problem(artifacts):
    p = projector.load(artifacts["symmetric"])
    good = np.ones((2, D), np.float32)
    with pytest.raises(DataError, match=r"document embeddings must have shape \(n, 8\).*got \(2, 9\)"):
        p.score(good, np.ones((2, D + 1)))
    bad = good.copy()
    bad[1, 3] = np.inf
    with pytest.raises(DataError, match=r"query embeddings contain NaN/inf \(row 1 of 2\)"):
        p.probability(bad, good)
    assert issubclass(DataError, ProjectorError)
