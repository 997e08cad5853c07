"""The train task registry and the one way train names its sources: every pairs layout has one entry, and the
stage reads your files through projector.train.supervision, not flag by flag."""
import inspect

import pytest

from projector.formats import pairs as pairs_format
from projector.train.projection import MODES
from projector.train.tasks import TASKS


def test_every_pairs_layout_has_one_train_task():
    assert set(TASKS) == set(pairs_format.LAYOUTS)
    for name, t in TASKS.items():
        assert t.name == name and t.mode in MODES and t.metric in ("val_ndcg@10", "val_map")
    assert TASKS["qa"].mode == "asymmetric" and TASKS["items"].metric == "val_map"


@pytest.mark.parametrize("flag", ["validation_queries", "train_queries", "train_labels", "validation_labels"])
def test_train_stage_names_sources_through_supervision(flag):
    """The stage reads your files in one place (projector.train.supervision), not flag by flag."""
    from projector.train import stage

    assert f"cfg.{flag}" not in inspect.getsource(stage.train)
