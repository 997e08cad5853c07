"""projector.train on a folder of layout items (generate --judge attribute), written with projector.formats.pairs'
own writer: the symmetric model from item labels, chosen on the validation items' label mAP, exported,
loaded, resumed; and the folders it must refuse."""
import json

import numpy as np
import pytest

from projector.formats import pairs as P
from projector.formats.corpus import Passage
from projector.errors import DataError, ProjectorError

# The label (what kind of program) is a short phrase; the topic, shared across kinds, fills most of each text,
# so frozen cosine groups items by topic and a linear map has to learn to look at the phrase instead.
KINDS = {"cli": "a command-line tool run from the shell prompt",
         "gui": "a graphical desktop application with windows and menus",
         "daemon": "a background daemon service that starts at boot"}
TOPICS = ["astronomy star charts", "music playlists and audio files", "email and mailing lists",
          "photo editing and images", "chess games and puzzles", "spreadsheets and accounting",
          "network packet capture", "python source code", "weather forecasts", "recipes and cooking",
          "maps and GPS routes", "backups of disks", "fonts and typography", "video streaming", "chat messages",
          "printer queues"]
QUICK = dict(threads=1, sentence_transformers=False)


def item_text(topic: str, kind: str) -> str:
    return f"Software about {topic}, everything for {topic}: {KINDS[kind]}."


def write_items(root, label=lambda i, kind, split: kind, splits=(10, 13), text=None):
    """48 items (16 topics x 3 kinds): topics [0, splits[0]) train, then validation, then test; every 7th
    train item unknown (the LLM was unsure). ``label(i, kind, split)`` -> the label written; ``text(topic,
    kind, split)`` -> the text (default ``item_text``)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for t, topic in enumerate(TOPICS):
        for k, kind in enumerate(KINDS):
            i = 3 * t + k
            split = "train" if t < splits[0] else "validation" if t < splits[1] else "test"
            lab = P.UNKNOWN if split == "train" and i % 7 == 0 else label(i, kind, split)
            body = text(topic, kind, split) if text else item_text(topic, kind)
            rows.append(P.item_row(Passage(f"p{i}#0", f"p{i}", body), lab, split))
    P.write_dataset(rows, root, P.ITEMS)
    (root / P.MANIFEST).write_text(json.dumps({"format": P.FORMAT, "format_version": P.FORMAT_VERSION,
                                               "task": "pairs", "layout": P.ITEMS, "corpus_fingerprint": "t"}))
    return root


def held_out():
    """The test items' texts and kinds (topics never seen in training or validation)."""
    return zip(*[(item_text(t, k), k) for t in TOPICS[13:] for k in KINDS])


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    return write_items(tmp_path_factory.mktemp("items") / "attr")


@pytest.fixture(scope="module")
def trained(items, tmp_path_factory):
    from projector.train.stage import train

    out = tmp_path_factory.mktemp("model") / "m"
    return out, train(pairs=str(items), out=str(out), threads=1)       # the defaults a user gets


def test_the_exported_model_beats_cosine_on_held_out_items(trained):
    import projector
    from projector.embed.embedding import embed
    from projector.metrics import label_map

    out, summary = trained
    texts, kinds = held_out()
    x = embed(list(texts), show_progress=False)
    cos = label_map(x, kinds, min_class=2)["map"]
    p = projector.load(out)
    assert p.mode == "symmetric" and summary["selected"] != "cosine" and summary["warning"] is None
    assert label_map(p.project_queries(x), kinds, min_class=2)["map"] > cos + 0.25
    assert summary["test"][summary["selected"]]["test_map"] > summary["test"]["cosine"]["test_map"] + 0.25


def test_candidates_selection_and_counts_are_recorded(trained):
    out, summary = trained
    meta = json.loads((out / "projector.json").read_text())
    val = meta["metrics"]["validation"]
    assert set(val) == {"cosine", "lda", "lda+cosine-0.5", "lda+cosine-1", "lda+cosine-2", "trained", "trained-k64"}
    assert meta["metrics"]["metric"] == "val_map"
    best = max(val, key=lambda n: val[n]["val_map"])
    assert val[meta["selected"]]["val_map"] == val[best]["val_map"]          # chosen on validation label mAP
    assert meta["rank"] == {"lda": 2, "trained": 384, "trained-k64": 64}.get(meta["selected"], 384)
    items = meta["training"]["items"]
    assert items["classes"] == ["cli", "daemon", "gui"]
    assert items["splits"]["train"] == {"items": 30, "known": 25, "labels": {"daemon": 9, "gui": 8, "cli": 8,
                                                                            P.UNKNOWN: 5}}
    assert items["splits"]["validation"]["known"] == 9 and meta["pairs"]["layout"] == P.ITEMS
    assert {r["rank"] for r in meta["training"]["runs"].values()} == {384, 64}
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert {"epoch", "train_loss", "val_logloss", "val_map", "candidate"} <= set(log[0])
    assert [sum(r["candidate"] == n for r in log) for n in ("trained", "trained-k64")] == \
        [meta["training"]["runs"][n]["epochs_run"] for n in ("trained", "trained-k64")]
    config = json.loads((out / "config.json").read_text())
    assert (config["lr"], config["epochs"], config["patience"]) == (1e-3, 300, 20)   # the items defaults, resolved


def test_probability_is_calibrated_on_the_implied_validation_pairs(trained, items):
    """The exported s, b are the Platt fit on every pair of validation items (9 known -> 36 pairs)."""
    import projector
    from projector.embed.embedding import embed
    from projector.metrics import calibration

    out, summary = trained
    cal = summary["validation"][summary["selected"]]["calibration"]
    assert (cal["pairs"], cal["positives"]) == (36, 9)
    rows = P.load_items(items)["validation"]
    x = embed([r["text"] for r in rows], show_progress=False)
    y = np.array([r["label"] for r in rows], dtype=object)
    i, j = np.triu_indices(len(rows), 1)
    prob = projector.load(out).probability(x, x)[i, j]
    assert calibration(prob, (y[i] == y[j]).astype(int))["logloss"] == pytest.approx(cal["logloss"], abs=1e-3)


def test_the_sentence_transformers_folder_gives_the_loader_vectors(items, tmp_path):
    import projector
    from sentence_transformers import SentenceTransformer

    from projector.train.stage import train

    out = tmp_path / "m"
    train(pairs=str(items), out=str(out), threads=1, rank=16, epochs=3)    # --rank: one trained rank, 16
    meta = json.loads((out / "projector.json").read_text())
    assert set(meta["metrics"]["validation"]) == {"cosine", "pca-16", "lda", "trained"}
    texts, _ = held_out()
    st = SentenceTransformer(str(out / "sentence-transformers"), device="cpu")
    p = projector.load(out / "sentence-transformers")
    np.testing.assert_allclose(st.encode(list(texts)), p.encode_queries(list(texts)), atol=1e-5)


def test_interrupted_and_re_run_items_training_resume_to_the_same_result(items, tmp_path, monkeypatch):
    from safetensors.numpy import load_file

    from projector.train.stage import train
    from test_train import train_whole_and_resumed

    cfg = {**QUICK, "epochs": 4, "patience": 10}
    a, b = train_whole_and_resumed(items, tmp_path, monkeypatch, cfg)
    assert all(np.allclose(a[k], b[k], atol=1e-6) for k in a)
    for ckpt in ("checkpoint", "checkpoint-k64"):  # both trained ranks, not only the exported candidate
        full, cut = (load_file(str(tmp_path / d / ckpt / "state.safetensors")) for d in ("full", "cut"))
        assert all(np.allclose(full[k], cut[k], atol=1e-6) for k in full if k.startswith("best."))
    log = (tmp_path / "cut/train_log.jsonl").read_text().splitlines()
    assert len(log) == 8                                                  # 4 epochs of each rank
    train(pairs=str(items), out=str(tmp_path / "cut"), **cfg)            # finished: the same command again
    assert (tmp_path / "cut/train_log.jsonl").read_text().splitlines() == log
    again = load_file(str(tmp_path / "cut/model.safetensors"))
    assert all(np.array_equal(again[k], b[k]) for k in b)
    with pytest.raises(ProjectorError, match="other settings"):
        train(pairs=str(items), out=str(tmp_path / "cut"), **{**cfg, "lr": 3e-3})


def test_nothing_beats_cosine_and_the_export_says_so(tmp_path):
    """Validation items of one label share one text, so frozen cosine ranks them perfectly and no candidate can
    beat it: cosine is exported (a tie goes to the simpler) and the warning names every candidate's score."""
    from projector.train.stage import train

    root = write_items(tmp_path / "same", text=lambda topic, kind, split: KINDS[kind] if split == "validation"
                       else item_text(topic, kind))
    summary = train(pairs=str(root), out=str(tmp_path / "m"), **QUICK, epochs=3)
    meta = json.loads((tmp_path / "m/projector.json").read_text())
    assert summary["validation"]["cosine"]["val_map"] == pytest.approx(1.0)
    assert meta["selected"] == "cosine" and "no candidate beat it" in meta["warning"]
    assert "lda" in meta["warning"] and "trained-k64" in meta["warning"]


@pytest.mark.parametrize("label, argv, message", [
    (lambda i, kind, split: "cli" if split == "train" else kind, [], r"train: known labels \['cli'\]"),
    (lambda i, kind, split: kind if split == "train" else P.UNKNOWN, [], "validation: no two items share"),
    (lambda i, kind, split: f"v{i}" if split == "validation" else kind, [], "validation: no two items share"),
    (lambda i, kind, split: kind, ["--mode", "asymmetric"], "trains the symmetric model"),
    (lambda i, kind, split: kind, ["--query-template", "q: {text}"], "--document-template differs"),
])
def test_bad_items_folders_exit_2_with_one_line(tmp_path, capsys, label, argv, message):
    from projector.train.stage import main

    root = write_items(tmp_path / "bad", label=label)
    assert main(["--pairs", str(root), "--out", str(tmp_path / "m"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("projector.train: error:")
    assert __import__("re").search(message, err[0]), err[0]


def test_an_items_folder_without_validation_is_refused_like_pairs(tmp_path):
    """As labelled pairs are (load_pairs: 'generate with a validation fraction > 0'): no seeded validation split
    is made from the train items behind the user's back; the error names the fix."""
    from projector.formats.pairs import load_pairs

    root = write_items(tmp_path / "noval", splits=(13, 13))
    with pytest.raises(DataError, match="validation is missing or empty; generate with a validation fraction"):
        load_pairs(root, items=True)
