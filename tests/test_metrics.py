"""projector.metrics against reference implementations (trec_eval via pytrec_eval, scikit-learn) and by construction."""
import numpy as np
import pytest

from projector import metrics as M


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _trec_ndcg10(top: np.ndarray, relevant: list[set[int]]) -> np.ndarray:
    """trec_eval's ndcg_cut_10 per query of a ranking (scores descend with rank, so its sort keeps our order)."""
    import pytrec_eval

    qrels = {str(q): {str(d): 1 for d in rel} for q, rel in enumerate(relevant)}
    run = {str(q): {str(d): float(len(row) - r) for r, d in enumerate(row)} for q, row in enumerate(top)}
    res = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"}).evaluate(run)
    return np.array([res[str(q)]["ndcg_cut_10"] for q in range(len(relevant))])


@pytest.mark.parametrize("n_docs,depth", [(40, 40), (300, 10), (8, 8)])
def test_ndcg_equals_trec_eval_on_random_rankings(n_docs, depth):
    """Random rankings (relevant documents pushed up by a random amount, so every NDCG from 0 to 1 occurs) and
    relevant sets of 1..15 documents (more than 10: the ideal DCG is cut at 10 too)."""
    rng = np.random.default_rng(n_docs)
    relevant = [set(rng.choice(n_docs, rng.integers(1, min(15, n_docs) + 1), replace=False).tolist())
                for _ in range(200)]
    scores = rng.normal(size=(200, n_docs))                                               # (200, n_docs)
    for s, rel in zip(scores, relevant):
        s[list(rel)] += rng.uniform(0, 3)
    top = np.argsort(-scores, axis=1)[:, :depth]                                          # (200, depth)
    ours = M.ndcg_at_k(top, relevant, 10)
    np.testing.assert_allclose(ours, _trec_ndcg10(top, relevant), atol=1e-6)
    np.testing.assert_allclose(ours, M.retrieval_metrics(top, relevant)["ndcg@10"], atol=1e-6)
    assert 0.05 < ours.mean() < 0.95 and ours.std() > 0.05      # neither trivial nor constant


def test_ndcg_edge_cases():
    assert M.ndcg_at_k(np.array([[3, 1, 2]]), [{3}]).tolist() == [1.0]                  # the hit at rank 1
    assert M.ndcg_at_k(np.array([[1, 3, 2]]), [{3}])[0] == pytest.approx(1 / np.log2(3))
    assert M.ndcg_at_k(np.array([[0, 1]]), [{5}]).tolist() == [0.0]                       # never found
    assert M.ndcg_at_k(np.array([[0, 1]]), [set()]).tolist() == [0.0]                     # nothing to find
    assert M.ndcg_at_k(np.arange(20)[None], [set(range(12))]).tolist() == [1.0]          # 12 relevant, top 10 all hits
    assert M.ndcg_at_k(np.zeros((0, 10), dtype=int), []).shape == (0,)


def test_training_validation_ndcg_is_trec_evals():
    """projector.train.fit's early-stopping NDCG@10 (a projection ranking every doc) is trec_eval's on that ranking."""
    import torch

    from projector.train.fit import ndcg_at_10
    from projector.train.inputs import Split
    from projector.train.projection import Projection

    g = torch.Generator().manual_seed(0)
    docs = torch.nn.functional.normalize(torch.randn(700, 16, generator=g), dim=-1)         # (N, d)
    q = torch.nn.functional.normalize(docs[:600] + 0.3 * torch.randn(600, 16, generator=g), dim=-1)  # (m, d)
    relevant = [{i, i + 100} if i % 4 == 0 else {i} for i in range(600)]
    model = Projection(16, 16, "asymmetric")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))                          # not the identity
        scores = (model.project_queries(q) @ model.project_documents(docs).T).numpy()     # (m, N)
    top = np.argsort(-scores, axis=1)[:, :100]
    want = _trec_ndcg10(top, relevant).mean()
    assert ndcg_at_10(model, Split(q, docs, relevant)) == pytest.approx(want, abs=1e-6)
    assert 0.1 < want < 0.9


def test_best_threshold_maximises_validation_accuracy():
    s = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.1])
    y = np.array([1, 1, 0, 1, 0, 0])
    t = M.best_threshold(s, y)
    assert 0.3 < t < 0.4 or 0.7 < t < 0.8      # both give 5/6 correct
    assert ((s >= t) == y).mean() == pytest.approx(5 / 6)
    assert M.best_threshold(np.array([0.5, 0.4]), np.array([0, 0])) > 0.5     # all negative: nothing passes


def test_calibration_metrics():
    y = np.array([0, 1] * 50)
    m = M.calibration(np.full(100, 0.5), y)
    assert m["ece@15"] == pytest.approx(0) and m["brier"] == pytest.approx(0.25)
    assert m["logloss"] == pytest.approx(np.log(2))
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200_000)
    assert M.calibration(p, (rng.uniform(size=p.size) < p).astype(int))["ece@15"] < 0.01   # calibrated by construction
    assert M.calibration(p ** 3, (rng.uniform(size=p.size) < p).astype(int))["ece@15"] > 0.1
    r = M.reliability(np.array([0.05, 0.06, 0.95]), np.array([0, 1, 1]), bins=10)
    assert r["count"][0] == 2 and r["positive_rate"][0] == 0.5 and r["count"][9] == 1


def test_bootstrap():
    x = np.random.default_rng(0).normal(0.2, 1, size=500)
    lo, hi = M.bootstrap_ci(x, 500)
    assert lo < x.mean() < hi and lo > 0
    assert M.bootstrap_ci(np.zeros(50), 100) == [0.0, 0.0]
    y = np.array([0, 1] * 100)
    lo, hi = M.bootstrap_stat_ci(lambda i: M.pair_stat("accuracy", y.astype(float), y, i, 0.5), len(y), 50)
    assert lo == hi == 1.0                                                        # a perfect scorer stays perfect


def test_calibration_sampling():
    """All positives, then ``hard`` top-cosine and ``rand`` uniform non-relevant passages per query."""
    rng = np.random.default_rng(0)
    d = _unit(rng.normal(size=(150, 16)))
    q = _unit(d[:60] + 0.9 * rng.normal(size=(60, 16)))
    qrels = [{i, i + 75} if i % 3 == 0 else {i} for i in range(60)]
    top = np.argsort(-(q @ d.T), axis=1)[:, :100]
    qi, di, y = M.sample_calibration_pairs(top, qrels, len(d), hard=3, rand=4, seed=0)
    assert y.sum() == sum(len(r) for r in qrels) and (y == 0).sum() == 60 * 7
    for i, j, lab in zip(qi, di, y):
        assert (j in qrels[i]) == bool(lab)
    assert len(set(zip(qi, di))) == len(qi)                     # no pair twice
    first_negs = [j for i, j, lab in zip(qi, di, y) if i == 1 and not lab][:3]
    assert first_negs == [j for j in top[1] if j not in qrels[1]][:3]  # the hard ones are cosine's top non-relevant


def test_fast_auc_ap_equals_sklearn():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    for n in (5, 40, 300):
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        s = np.round(rng.normal(size=n) + y, 1)          # rounding makes ties
        auc, ap = M.auc_ap(s, y)
        assert auc == pytest.approx(roc_auc_score(y, s)) and ap == pytest.approx(average_precision_score(y, s))
    assert np.isnan(M.auc_ap(np.ones(3), np.ones(3))[0])
