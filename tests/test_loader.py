"""projector.load: numpy-only projection, agreement with training and with the sentence-transformers folder,
and clear errors for corrupt or mismatched artifacts."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import projector
from projector.errors import ArtifactError, DataError
from test_train import FAST, make_qa_pairs

QUERIES = ["a catchy tune with guitar celebrating the plum", "a catchy tune with guitar celebrating the rice"]
DOCS = ["Recipe: slice the plum, cook it slowly with a little salt and serve it warm.",
        "Song lyrics: a cheerful melody about the rice, sung with guitar and drums."]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from projector.train.stage import train

    root = tmp_path_factory.mktemp("loader")
    cache = tmp_path_factory.getbasetemp() / "projector-cache"  # the session cache of conftest
    out = root / "model"
    train(pairs=str(make_qa_pairs(root / "pairs")), out=str(out), cache_dir=str(cache),
          **{**FAST, "epochs": 5, "sentence_transformers": True})
    return out


def test_numpy_projection_matches_the_torch_model(artifact):
    import torch

    from projector.train.projection import Projection

    p = projector.load(artifact)
    assert (p.mode, p.encoder, p.dim, p.rank) == ("asymmetric", "sentence-transformers/all-MiniLM-L6-v2", 384, 384)
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(3, 384)).astype(np.float32), rng.normal(size=(5, 384)).astype(np.float32)
    q, d = q / np.linalg.norm(q, axis=1, keepdims=True), d / np.linalg.norm(d, axis=1, keepdims=True)
    m = Projection(384).set_weights(p.W_q_, p.W_a_)
    with torch.no_grad():
        m.log_scale.fill_(np.log(p.scale))
        m.bias.fill_(p.bias)
        expected = m(torch.tensor(q), torch.tensor(d)).numpy()
    assert np.allclose(p.score(q, d), expected, atol=1e-4)
    prob = p.probability(q, d)
    assert prob.shape == (3, 5) and ((prob > 0) & (prob < 1)).all()


def test_folded_matrix_gives_the_unnormalised_dot_product(artifact):
    p = projector.load(artifact)
    rng = np.random.default_rng(1)
    q, d = rng.normal(size=(2, 384)), rng.normal(size=(4, 384))
    assert np.allclose((q @ p.M_.T) @ d.T, (q @ p.W_q_.T) @ (d @ p.W_a_.T).T, atol=1e-3)


def test_projecting_embeddings_needs_no_torch(artifact):
    code = ("import sys, numpy as np, projector; p = projector.load(sys.argv[1]); "
            "x = np.ones((2, p.dim), np.float32); p.score(x, x); p.project_queries(x); "
            "bad = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]; "
            "assert not bad, bad; print('ok')")
    r = subprocess.run([sys.executable, "-c", code, str(artifact)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_sentence_transformers_folder_scores_like_the_loader(artifact):
    from sentence_transformers import SentenceTransformer

    p = projector.load(artifact)
    st = SentenceTransformer(str(artifact / "sentence-transformers"), device="cpu")
    sq, sd = st.encode_query(QUERIES), st.encode_document(DOCS)
    assert np.allclose(sq, p.encode_queries(QUERIES), atol=1e-5)
    assert np.allclose(sd, p.encode_documents(DOCS), atol=1e-5)
    from projector.embed.embedding import embed

    expected = p.score(embed(QUERIES, show_progress=False), embed(DOCS, show_progress=False))
    assert np.allclose(p.scale * sq @ sd.T + p.bias, expected, atol=1e-4)


def test_corrupt_and_mismatched_artifacts(artifact, tmp_path):
    def copy(name):
        dst = tmp_path / name
        shutil.copytree(artifact, dst, ignore=shutil.ignore_patterns("sentence-transformers", "checkpoint"))
        return dst

    with pytest.raises(ArtifactError, match="projector.json not found"):
        projector.load(tmp_path)

    torn = copy("torn")
    data = bytearray((torn / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (torn / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum"):
        projector.load(torn)

    future = copy("future")
    meta = json.loads((future / "projector.json").read_text())
    (future / "projector.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ArtifactError, match="format_version 99"):
        projector.load(future)

    shapes = copy("shapes")
    (shapes / "projector.json").write_text(json.dumps({**meta, "rank": 128}))
    with pytest.raises(ArtifactError, match="shape"):
        projector.load(shapes)

    garbled = copy("garbled")
    (garbled / "projector.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt"):
        projector.load(garbled)

    with pytest.raises(ArtifactError, match="trained on encoder"):
        projector.load(artifact, encoder="sentence-transformers/all-mpnet-base-v2")

    p = projector.load(artifact)
    with pytest.raises(DataError, match=r"shape \(n, 384\)"):
        p.project_queries(np.ones((2, 768), np.float32))
