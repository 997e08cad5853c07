"""projector.embed: the bundled encoder offline, identities, and the content-keyed cache."""
import numpy as np
import pytest

import projector.embed as embed_mod
from projector.embed import BUNDLED_NAME, apply_template, embed, encoder_identity
from projector.errors import DataError

TEXTS = ["How do I open a file?", "Use open() with a context manager.", "Lists are mutable sequences."]


def test_bundled_identity_is_stable():
    assert encoder_identity(None) == BUNDLED_NAME
    assert encoder_identity(embed_mod.encoder_source(None)) == BUNDLED_NAME  # the same weights by folder


def test_embed_shapes_normalised_and_cached(tmp_path, monkeypatch):
    x = embed(TEXTS, cache_dir=tmp_path, show_progress=False)
    assert x.shape == (3, 384) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert list((tmp_path).rglob("shard-*.npz"))

    def no_encoder(*a, **k):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(embed_mod, "load_encoder", no_encoder)
    y = embed(TEXTS[::-1], cache_dir=tmp_path, show_progress=False)  # order does not matter: keyed on content
    assert np.array_equal(x[::-1], y)


def test_template_is_part_of_the_key(tmp_path):
    plain = embed(TEXTS[:1], cache_dir=tmp_path, show_progress=False)
    tpl = embed(TEXTS[:1], template="question: {text}", cache_dir=tmp_path, show_progress=False)
    assert not np.allclose(plain, tpl)
    assert apply_template(["x"], "q: {text} !") == ["q: x !"]
    with pytest.raises(DataError, match="placeholder"):
        apply_template(["x"], "no placeholder")
