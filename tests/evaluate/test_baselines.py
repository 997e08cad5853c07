"""Baselines: each transform does what its paper says, on arrays with known structure."""
import numpy as np
import pytest

from projector.evaluate import baselines as B
from projector.errors import DataError


@pytest.fixture
def corpus():
    rng = np.random.default_rng(0)
    # anisotropic, off-centre: a common direction plus a few strong components, like real embeddings
    x = rng.normal(size=(400, 12)) * np.linspace(3, 0.3, 12) + 2.0
    return x.astype(np.float32)


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_cosine_and_dot(corpus):
    q = corpus[:7]
    np.testing.assert_allclose(B.Cosine().fit(corpus).score(q, corpus), _unit(q) @ _unit(corpus).T, atol=1e-5)
    np.testing.assert_allclose(B.DotProduct().fit(corpus).score(q, corpus), q @ corpus.T, rtol=1e-5)


def test_mean_centred_is_cosine_of_centred_unit_vectors(corpus):
    u = _unit(corpus)
    c = u - u.mean(0)
    np.testing.assert_allclose(B.MeanCentred().fit(corpus).score(corpus[:5], corpus), _unit(c[:5]) @ _unit(c).T,
                               atol=1e-5)


def test_zca_whitens_the_corpus(corpus):
    w = B.Whitening("zca", eps=0.0).fit(corpus)
    z = (_unit(corpus) - w.mean_) @ w.components_
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(12), atol=1e-3)
    np.testing.assert_allclose(w.components_, w.components_.T, atol=1e-4)   # ZCA is symmetric


def test_full_rank_pca_whitening_ranks_like_zca(corpus):
    zca = B.Whitening("zca", eps=0.01).fit(corpus).score(corpus[:9], corpus)
    pca = B.Whitening("pca", eps=0.01).fit(corpus).score(corpus[:9], corpus)
    np.testing.assert_allclose(zca, pca, atol=1e-4)
    assert B.Whitening("pca", n_components=4).fit(corpus).project_queries(corpus).shape == (400, 4)


def test_all_but_the_top_removes_top_directions(corpus):
    abtt = B.AllButTheTop(n_components=2).fit(corpus)
    z = (_unit(corpus) - abtt.mean_) @ abtt.components_
    assert np.abs(z @ abtt.removed_components_.T).max() < 1e-4
    assert B.AllButTheTop().fit(np.random.default_rng(0).normal(size=(20, 384))).removed_components_.shape == (4, 384)


def test_closed_form_recovers_a_rotation():
    rng = np.random.default_rng(1)
    q = _unit(rng.normal(size=(500, 8)))
    rot, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    p = q @ rot
    cf = B.ClosedForm(ridge=1e-6).fit(p, q, p)
    np.testing.assert_allclose(cf.components_, rot, atol=1e-3)
    s = cf.score(q[:20], p)
    assert (s.argmax(1) == np.arange(20)).all()
    np.testing.assert_allclose(cf.project_documents(p), _unit(p), atol=1e-5)   # documents untouched


def test_symmetric_closed_form_is_symmetric():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(200, 6)).astype(np.float32)
    b = a + 0.3 * rng.normal(size=a.shape).astype(np.float32)
    cf = B.ClosedForm(symmetric=True).fit(a, a, b)
    np.testing.assert_allclose(cf.score(a[:10], b[:10]), cf.score(b[:10], a[:10]).T, atol=1e-5)


def test_default_rows_start_with_cosine():
    rows = B.default_baselines(384, "qa")
    assert rows[0].name == "cosine" and rows[-1].name == "closed-form"
    assert "closed-form" not in [r.name for r in B.default_baselines(384)]


def test_errors_say_what_to_change(corpus):
    with pytest.raises(DataError, match="not fitted"):
        B.Cosine().score(corpus, corpus)
    with pytest.raises(DataError, match="dimension 5"):
        B.MeanCentred().fit(corpus).score(corpus[:, :5], corpus[:, :5])
    bad = corpus.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        B.Cosine().fit(bad)
    with pytest.raises(DataError, match="training pairs"):
        B.ClosedForm().fit(corpus)
    with pytest.raises(DataError, match="'zca' or 'pca'"):
        B.Whitening("bert")
