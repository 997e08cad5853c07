"""projector.formats.vectors.l2_normalise: each caller keeps the precision its results were trained and cached with.

A float64 normalisation of the encoder's outputs differs from the float32 one in the last bit of about a
third of the values; that was enough to move a rank-64 closed-form training run from validation NDCG@10
0.779 to 0.705 (issue 12), so embed and the baselines stay float32 and only the loader uses float64.
"""
import numpy as np
import pytest

from projector.formats.vectors import l2_normalise

TEXTS = [f"{w} is a word about the {t}" for w in ("mango", "salt", "guitar", "river") for t in ("song", "recipe")]


def _float32_rows(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-12))


def _float64_rows(x):
    x = np.asarray(x, dtype=np.float32)
    return (x / np.maximum(np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True), 1e-12)).astype(np.float32)


def test_embed_returns_the_float32_normalisation_of_the_encoder_output(tmp_path):
    from projector.embed.embedding import embed
    from projector.embed.encoder import load_encoder

    raw = load_encoder(None).encode(TEXTS, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
    got = embed(TEXTS, cache_dir=str(tmp_path / "cache"), show_progress=False)
    assert got.dtype == np.float32
    assert np.array_equal(got, _float32_rows(raw))             # bit for bit: cached vectors of older versions
    assert not np.array_equal(_float32_rows(raw), _float64_rows(raw))  # the two precisions are distinguishable here
    again = embed(TEXTS, cache_dir=str(tmp_path / "cache"), show_progress=False)   # from the cache
    assert np.array_equal(again, got)


def test_both_precisions_bit_for_bit_and_float64_survives_huge_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 384)).astype(np.float32)
    assert np.array_equal(l2_normalise(x), _float32_rows(x))
    assert np.array_equal(l2_normalise(x, precision=np.float64), _float64_rows(x))
    assert l2_normalise(x).dtype == l2_normalise(x, precision=np.float64).dtype == np.float32

    huge = np.full((1, 384), 3e37, dtype=np.float32)          # squared norm beyond float32's range
    np.testing.assert_allclose(np.linalg.norm(l2_normalise(huge, precision=np.float64), axis=1), 1.0, rtol=1e-6)
    assert not np.any(l2_normalise(np.zeros((2, 3))))           # zero rows stay zero in both
    assert not np.any(l2_normalise(np.zeros((2, 3)), precision=np.float64))
    with pytest.raises(ValueError, match="precision"):
        l2_normalise(x, precision=np.float16)
