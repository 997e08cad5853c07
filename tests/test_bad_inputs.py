"""Bad inputs across the stages: single-class labels, NaN/inf embeddings, embeddings of another encoder or
dimension, an encoder that does not exist. Each is one clear error naming what to change; where the current
behaviour is right the test pins it."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from projector.errors import ArtifactError, DataError, ProjectorError
from test_train import FAST, make_labelled_pairs, make_qa_pairs

REPO = Path(__file__).resolve().parent.parent


def with_labels(root: Path, split: str, label: int) -> Path:
    """Labelled pairs whose ``split`` holds only ``label``, plus the passages.jsonl generate writes."""
    from datasets import Dataset, DatasetDict, load_from_disk

    p = make_labelled_pairs(root)
    dd = load_from_disk(str(p / "dataset"))
    parts = {s: dd[s].to_list() for s in dd}
    for r in parts[split]:
        r["label"] = label
    shutil.rmtree(p / "dataset")
    DatasetDict({s: Dataset.from_list(v) for s, v in parts.items()}).save_to_disk(str(p / "dataset"))
    texts = {r[f"id_{x}"]: r[f"text_{x}"] for rows in parts.values() for r in rows for x in "ab"}
    (p / "passages.jsonl").write_text("".join(json.dumps({"passage_id": k, "doc_id": k, "title": "", "text": v}) + "\n"
                                              for k, v in texts.items()))
    return p


@pytest.fixture(scope="module")
def qa_pairs(tmp_path_factory):
    return make_qa_pairs(tmp_path_factory.mktemp("bad") / "qa")


# ----------------------------------------------------------------------------------------- single class


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_train_split_is_refused(tmp_path, label):
    from projector.formats.pairs import load_pairs

    with pytest.raises(DataError, match=r"train: column 'label' has a single class .*both"):
        load_pairs(with_labels(tmp_path / "p", "train", label))


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_validation_split_is_refused(tmp_path, label):
    """All-0 validation: NDCG@10 is 0 for every candidate, cosine is exported with a misleading warning.
    All-1 validation: the probabilities are calibrated on positives only."""
    from projector.formats.pairs import load_pairs

    with pytest.raises(DataError, match=r"validation: column 'label' has a single class"):
        load_pairs(with_labels(tmp_path / "p", "validation", label))


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_evaluation_split_is_refused(tmp_path, label):
    from projector.evaluate.stage import parse_args, run

    p = with_labels(tmp_path / "p", "test", label)
    with pytest.raises(DataError, match=rf"test split of .* has only label {label}; ROC-AUC needs both classes"):
        run(parse_args(["--pairs", str(p), "--out", str(tmp_path / "ev"), "--bootstrap", "10"]))


# ------------------------------------------------------------------------------------------ NaN / inf


def _poison(monkeypatch, marker: str, value=np.nan):
    """Embeddings of the texts containing ``marker`` get a NaN/inf (as a broken encoder or a corrupt cache would)."""
    import projector.train.data as tr

    real = tr.embed

    def embed(texts, *args, **kwargs):
        x = np.array(real(texts, *args, **kwargs))
        hit = [i for i, t in enumerate(texts) if marker in t]
        x[hit[:1], 0] = value
        return x

    monkeypatch.setattr(tr, "embed", embed)


@pytest.mark.parametrize("marker,value", [("catchy tune", np.nan), ("catchy tune", np.inf)])
def test_nan_or_inf_query_embeddings_are_refused(qa_pairs, tmp_path, monkeypatch, marker, value):
    from projector.train.stage import train

    _poison(monkeypatch, marker, value)
    with pytest.raises(DataError, match="NaN/inf"):
        train(pairs=str(qa_pairs), out=str(tmp_path / "m"), **{**FAST, "epochs": 1})


@pytest.mark.parametrize("task,marker", [("qa", "Recipe:"), ("qa", "Song lyrics"), ("pairs", "was great")])
def test_nan_document_embeddings_are_refused(qa_pairs, tmp_path, monkeypatch, task, marker):
    from projector.train.stage import train

    pairs = qa_pairs if task == "qa" else make_labelled_pairs(tmp_path / "lp")
    _poison(monkeypatch, marker)
    with pytest.raises(DataError, match="NaN/inf"):
        train(pairs=str(pairs), out=str(tmp_path / "m"), **{**FAST, "epochs": 1})


# ------------------------------------------------------------------------- another encoder or dimension


def test_evaluate_refuses_a_model_of_another_encoder(qa_pairs, tmp_path):
    from projector.evaluate.stage import parse_args, run
    from test_loader_properties import build

    other = build(tmp_path / "d8", "asymmetric", 8)  # encoder "test/encoder-d8", 8-d
    with pytest.raises(ArtifactError, match=r"trained on encoder 'test/encoder-d8', but evaluation embeds with "
                                            r"'sentence-transformers/all-MiniLM-L6-v2'"):
        run(parse_args(["--model", str(other), "--pairs", str(qa_pairs), "--encoder", "all-MiniLM-L6-v2",
                        "--out", str(tmp_path / "ev"), "--bootstrap", "10"]))


def test_a_model_of_another_dimension_names_the_shapes(qa_pairs, tmp_path):
    """projector.json claims the bundled encoder, the weights are 8-d: scoring 384-d vectors says so."""
    import projector
    from projector.embed.embedding import embed
    from projector.embed.encoder import BUNDLED_NAME
    from projector.evaluate.stage import parse_args, run
    from test_loader_properties import build

    path = build(tmp_path / "d8", "asymmetric", 8)
    meta = json.loads((path / "projector.json").read_text())
    (path / "projector.json").write_text(json.dumps({**meta, "encoder": BUNDLED_NAME}))
    p = projector.load(path)
    with pytest.raises(DataError, match=r"query embeddings must have shape \(n, 8\) for encoder "
                                        r"sentence-transformers/all-MiniLM-L6-v2, got \(1, 384\)"):
        p.score(embed(["a query"], show_progress=False), np.ones((1, 8)))
    with pytest.raises(DataError, match=r"must have shape \(n, 8\).*got \(\d+, 384\)"):
        run(parse_args(["--model", str(path), "--pairs", str(qa_pairs), "--out", str(tmp_path / "ev"),
                        "--bootstrap", "10"]))


def test_loading_with_another_encoder_is_refused(tmp_path):
    import projector
    from test_loader_properties import build

    path = build(tmp_path / "d8", "symmetric", 4)
    with pytest.raises(ArtifactError, match=r"trained on encoder test/encoder-d8, not sentence-transformers/"
                                            r"all-MiniLM-L6-v2"):
        projector.load(path, encoder="all-MiniLM-L6-v2")


def test_evaluate_refuses_a_corrupt_model_without_a_traceback(qa_pairs, tmp_path):
    from projector.evaluate.stage import parse_args, run
    from test_loader_properties import build

    path = build(tmp_path / "d8", "asymmetric", 8)
    (path / "projector.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"projector.json is corrupt"):
        run(parse_args(["--model", str(path), "--pairs", str(qa_pairs), "--out", str(tmp_path / "ev")]))


# ------------------------------------------------------------------------------------ unknown encoder


def test_unknown_encoder_in_train_is_one_line(qa_pairs, tmp_path):
    r = subprocess.run([sys.executable, "-m", "projector.train", "--pairs", str(qa_pairs), "--out", str(tmp_path / "m"),
                        "--encoder", "no-such/encoder-xyz", "--threads", "1", "--no-sentence-transformers"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("projector.train: error:")]
    assert len(lines) == 1 and r.stderr.strip().endswith(lines[0])  # the last line, and one line
    assert "cannot load encoder 'no-such/encoder-xyz'" in lines[0] and "no hub download" in lines[0]


def test_unknown_encoder_in_evaluate_and_generate(qa_pairs, tmp_path):
    from projector.evaluate.stage import parse_args, run
    from projector.generate.stage import GenerateConfig, generate

    with pytest.raises(ProjectorError, match="cannot load encoder 'no-such/encoder-xyz'"):
        run(parse_args(["--pairs", str(qa_pairs), "--encoder", "no-such/encoder-xyz", "--out", str(tmp_path / "ev")]))
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"id": "a", "text": "Some text to split into passages."}) + "\n")
    # generate used to fall back silently to approximate token counts for a name it could not find
    with pytest.raises(ProjectorError, match=r"--encoder 'no-such/encoder-xyz': no such folder, and no model"):
        generate(GenerateConfig(corpus=str(corpus), id_field="id", out=str(tmp_path / "g"),
                                encoder="no-such/encoder-xyz", base_url="http://127.0.0.1:9/v1", model="m"))
    assert not (tmp_path / "g" / "records.jsonl").exists()
