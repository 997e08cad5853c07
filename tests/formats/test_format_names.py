"""On-disk format names are a contract: folders and artifacts written before the redesign (``projector.pairs``,
``projector.projection``) load, and so do the few written while its rename was in force."""
import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_committed_pairs_folders_and_both_names_load(tmp_path):
    from projector.formats import pairs as P

    src = REPO / "benchmarks" / "pairs" / "faq-perl-debian"
    assert json.loads((src / P.MANIFEST).read_text())["format"] == P.FORMAT == "projector.pairs"
    assert P.load_pairs(src).task == "qa"
    dst = tmp_path / "renamed"
    shutil.copytree(src, dst)
    m = json.loads((dst / P.MANIFEST).read_text())
    (dst / P.MANIFEST).write_text(json.dumps({**m, "format": "projector.formats.pairs"}))
    assert P.load_pairs(dst).task == "qa"
    (dst / P.MANIFEST).write_text(json.dumps({**m, "format": "something.else"}))
    with pytest.raises(Exception, match="is not a pairs folder"):
        P.load_pairs(dst)


def test_committed_artifacts_and_both_names_load(tmp_path):
    import projector
    from projector.formats import artifact

    src = REPO / "benchmarks" / "models" / "debian-pkgs-section"
    assert json.loads((src / "projector.json").read_text())["format"] == artifact.FORMAT == "projector.projection"
    assert projector.load(src).dim > 0
    dst = tmp_path / "renamed"
    shutil.copytree(src, dst)
    meta = json.loads((dst / "projector.json").read_text())
    (dst / "projector.json").write_text(json.dumps({**meta, "format": "projector.train.projection"}))
    assert projector.load(dst).dim > 0
