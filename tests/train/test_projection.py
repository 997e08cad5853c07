"""The pure math of projector.train.projection: loss, initialisation, closed form."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from projector.errors import DataError
from projector.train.projection import (Projection, closed_form, init_weights, principal_directions, sigmoid_loss,
                                  symmetric_closed_form)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_sigmoid_loss_is_binary_log_loss_summed_per_query():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    labels = torch.tensor([[1, 0, 0], [0, 1, 1]])
    p = torch.sigmoid(logits)
    manual = -(labels * p.log() + (1 - labels) * (1 - p).log()).sum() / 2
    assert torch.allclose(sigmoid_loss(logits, labels), manual)
    weight = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])  # a masked cell contributes nothing
    cell = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none")
    assert torch.allclose(sigmoid_loss(logits, labels, weight), (cell * weight).sum() / 2)


def test_identity_init_ranks_exactly_like_cosine():
    rng = np.random.default_rng(0)
    q, d = unit(rng.normal(size=(7, 32))), unit(rng.normal(size=(50, 32)))
    model = init_weights(Projection(32), np.concatenate([q, d]))
    with torch.no_grad():
        logits = model(torch.tensor(q, dtype=torch.float32), torch.tensor(d, dtype=torch.float32)).numpy()
    assert np.allclose(logits, 20.0 * (q @ d.T) - 10.0, atol=1e-5)   # s = 20, b = -10 at step 0
    assert (np.argsort(-logits, axis=1) == np.argsort(-(q @ d.T), axis=1)).all()


def test_low_rank_init_is_principal_directions():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 16)) * np.geomspace(10, 0.1, 16)  # variance falls along the axes
    w = principal_directions(x, 3)
    assert w.shape == (3, 16)
    assert np.allclose(w @ w.T, np.eye(3), atol=1e-5)
    assert np.allclose(np.abs(w[:, :3]), np.eye(3), atol=0.1)     # the three largest-variance axes
    assert Projection(16, rank=3).W_q.shape == (3, 16)


def test_bad_settings_name_the_allowed_values():
    with pytest.raises(DataError, match="rank must be in"):
        Projection(16, rank=17)
    with pytest.raises(DataError, match="mode must be one of"):
        Projection(16, mode="triangular")


def test_closed_form_recovers_a_linear_map_and_shrinks_to_identity():
    rng = np.random.default_rng(2)
    q = rng.normal(size=(500, 8))
    A = rng.normal(size=(8, 8))
    assert np.allclose(closed_form(q, q @ A, ridge=0.0), A, atol=1e-4)
    assert np.allclose(closed_form(q, q @ A, ridge=1e9), np.eye(8), atol=1e-3)
    with pytest.raises(DataError):
        closed_form(q, q[:10])


def test_symmetric_closed_form_is_a_psd_factor():
    rng = np.random.default_rng(3)
    a = unit(rng.normal(size=(100, 8)))
    b = unit(a + 0.1 * rng.normal(size=(100, 8)))
    W = symmetric_closed_form(a, b, ridge=1.0, rank=4)
    assert W.shape == (4, 8)
    assert np.linalg.eigvalsh(W.T @ W).min() > -1e-6


def test_tensors_are_the_exported_state():
    sym, asym = Projection(8, mode="symmetric").tensors(), Projection(8, rank=4).tensors()
    assert set(sym) == {"W", "scale", "bias"} and set(asym) == {"W_q", "W_a", "scale", "bias"}
    assert asym["W_q"].shape == (4, 8) and np.isclose(asym["scale"][0], 20.0)


def test_cca_finds_the_shared_directions():
    from projector.train.projection import cca

    rng = np.random.default_rng(4)
    z = rng.normal(size=(400, 2))                              # two latent factors both sides share
    q = np.concatenate([z, rng.normal(size=(400, 6))], 1)
    p = np.concatenate([rng.normal(size=(400, 6)), z], 1)      # ... in other coordinates
    W_q, W_a = cca(q, p, ridge=0.01, rank=2)
    assert W_q.shape == W_a.shape == (2, 8)
    corr = [abs(np.corrcoef(q @ a, p @ b)[0, 1]) for a, b in zip(W_q, W_a)]
    assert min(corr) > 0.95
