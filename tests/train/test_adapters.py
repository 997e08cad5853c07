"""The few-pairs maps of issue 11 (projector.train.projection adapters, train --adapter/--stay-close/--query-only):
what each parameterisation starts as, what it may learn, and that the defaults are the shipped full W."""
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from projector.errors import DataError, ProjectorError
from projector.train.projection import Projection, init_weights
from test_train import FAST, make_qa_pairs, train_whole_and_resumed


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def qa_pairs(tmp_path_factory):
    return make_qa_pairs(tmp_path_factory.mktemp("pairs") / "qa")


@pytest.mark.parametrize("adapter", ["residual", "lowrank"])
def test_adapter_at_its_start_ranks_exactly_like_cosine(adapter):
    rng = np.random.default_rng(0)
    q, d = unit(rng.normal(size=(7, 32))), unit(rng.normal(size=(50, 32)))
    model = init_weights(Projection(32, adapter=adapter, adapter_rank=4), np.concatenate([q, d]))
    with torch.no_grad():
        logits = model(torch.tensor(q, dtype=torch.float32), torch.tensor(d, dtype=torch.float32)).numpy()
    assert np.allclose(logits, 20.0 * (q @ d.T) - 10.0, atol=1e-5)
    assert (np.argsort(-logits, axis=1) == np.argsort(-(q @ d.T), axis=1)).all()
    t = model.tensors()
    assert set(t) == {"W_q", "W_a", "scale", "bias"} and np.array_equal(t["W_q"], np.eye(32, dtype=np.float32))


def test_defaults_are_the_full_map_with_its_parameter_names():
    """Checkpoints and the identity decay key on these names: the default model is the one shipped before."""
    assert [n for n, _ in Projection(8).named_parameters()] == ["W_q", "W_a", "log_scale", "bias"]
    assert [n for n, _ in Projection(8, mode="symmetric").named_parameters()] == ["W_q", "log_scale", "bias"]
    assert [n for n, _ in Projection(8, adapter="lowrank", adapter_rank=2, query_only=True).named_parameters()] \
        == ["U_q", "V_q", "log_scale", "bias"]


def test_set_weights_sets_the_start_and_resets_the_delta():
    model = Projection(6, adapter="residual")
    with torch.no_grad():
        model.dW_q.fill_(0.5)
    start = np.random.default_rng(0).normal(size=(6, 6)).astype(np.float32)
    model.set_weights(start)
    assert np.array_equal(model.tensors()["W_q"], start) and np.array_equal(model.tensors()["W_a"], start)
    assert torch.equal(model.weight("q", start=True), torch.as_tensor(start))


def test_lowrank_learns_a_delta_of_the_rank_asked_and_exports_plain_matrices(qa_pairs, tmp_path):
    from projector.train.stage import train

    summary = train(pairs=str(qa_pairs), out=str(tmp_path / "m"), adapter="lowrank", adapter_rank=3, **FAST)
    assert summary["selected"] == "trained"
    t = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert set(t) >= {"W_q", "W_a"} and t["W_q"].shape == (384, 384)
    eye = np.eye(384)
    for name in ("W_q", "W_a"):
        s = np.linalg.svd(t[name].astype(np.float64) - eye, compute_uv=False)
        assert s[2] > 1e-3 * s[0] and s[3] < 1e-5 * s[0], (name, s[:5])  # exactly 3 directions moved


def test_query_only_leaves_the_passage_map_at_its_start(qa_pairs, tmp_path):
    from projector.train.stage import train

    summary = train(pairs=str(qa_pairs), out=str(tmp_path / "m"), query_only=True, **FAST)
    assert summary["selected"] == "trained"
    t = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert np.array_equal(t["W_a"], np.eye(384, dtype=np.float32))
    assert not np.allclose(t["W_q"], np.eye(384), atol=1e-3)


def test_stay_close_keeps_the_map_nearer_its_start(qa_pairs, tmp_path):
    """The penalty pulls the projected vectors toward the originals: the larger λ, the smaller ‖W − I‖."""
    from projector.train.stage import train

    far = {}
    for lam in (0.0, 10.0):
        train(pairs=str(qa_pairs), out=str(tmp_path / str(lam)), adapter="residual", stay_close=lam,
              **{**FAST, "epochs": 5, "patience": 5})
        t = load_file(str(tmp_path / str(lam) / "model.safetensors"))
        far[lam] = np.linalg.norm(t["W_q"] - np.eye(384)) + np.linalg.norm(t["W_a"] - np.eye(384))
    assert far[10.0] < 0.8 * far[0.0], far


def test_bad_adapter_settings_name_the_flag(qa_pairs, tmp_path):
    from projector.train.stage import train

    with pytest.raises(ProjectorError, match="--stay-close needs --adapter"):
        train(pairs=str(qa_pairs), out=str(tmp_path / "a"), stay_close=1.0, **FAST)
    with pytest.raises(ProjectorError, match="--query-only needs --mode asymmetric"):
        train(pairs=str(qa_pairs), out=str(tmp_path / "b"), query_only=True, mode="symmetric", **FAST)
    with pytest.raises(DataError, match="adapter_rank"):
        Projection(8, adapter="lowrank", adapter_rank=9)


def test_compare_adapter_rows_are_train_settings():
    """benchmarks/compare.py --adapters: every row is a distinct label with TrainConfig fields, today's recipe first."""
    import dataclasses
    import importlib.util
    import sys
    from pathlib import Path

    from projector.train.stage import TrainConfig

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "compare.py"
    spec = importlib.util.spec_from_file_location("benchmarks_compare", path)
    compare = importlib.util.module_from_spec(spec)
    sys.modules["benchmarks_compare"] = compare
    spec.loader.exec_module(compare)
    labels = [label for label, _ in compare.ADAPTER_ROWS]
    assert len(set(labels)) == len(labels) and compare.ADAPTER_ROWS[0] == ("projector asym k=d", {})
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for _, overrides in compare.ADAPTER_ROWS:
        assert set(overrides) <= fields
        TrainConfig(pairs="-", out="-", **overrides)


def test_interrupted_lowrank_run_resumes_to_the_same_matrices(qa_pairs, tmp_path, monkeypatch):
    """W₀ is a buffer set again from the same start, U and V come back from the checkpoint."""
    cfg = {**FAST, "epochs": 4, "patience": 10, "adapter": "lowrank", "adapter_rank": 4, "stay_close": 1.0}
    a, b = train_whole_and_resumed(qa_pairs, tmp_path, monkeypatch, cfg)
    assert all(np.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not np.allclose(a["W_q"], np.eye(384), atol=1e-4)   # it did train
