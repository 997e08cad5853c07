"""The task registries: every task generate can run and every folder train can read has one entry, and the
stages go through the entries (a task's methods, not branches), so a new task is one entry."""
import inspect
import itertools

import pytest

from projector.formats import pairs as pairs_format
from projector.generate import GenerateConfig
from projector.generate.tasks import TASKS as GENERATE_TASKS, Task, task_for, task_name
from projector.train.projection import MODES
from projector.train.tasks import TASKS as TRAIN_TASKS


def _protocol_methods():
    return [n for n, v in vars(Task).items() if callable(v) and not n.startswith("_")]


def test_every_generate_choice_has_one_task_with_the_whole_protocol(tmp_path):
    methods = _protocol_methods()
    assert {"prepare", "jobs", "rows", "manifest", "report", "check", "resume_identity"} <= set(methods)
    seen = set()
    for task, judge in itertools.product(("qa", "pairs"), ("pairwise", "attribute")):
        if task == "qa" and judge == "attribute":
            continue  # refused by the config check (attribute labels items for --task pairs)
        cfg = GenerateConfig(corpus="x.jsonl", out=str(tmp_path), task=task, judge=judge, criterion="same kind")
        t = task_for(cfg, tmp_path)
        seen.add(task_name(cfg))
        assert type(t) is GENERATE_TASKS[task_name(cfg)] and t.name == task_name(cfg)
        assert t.layout in pairs_format.LAYOUTS and t.prompt.version
        for m in methods:  # the same signature as the protocol's, so the stage can call any task alike
            assert list(inspect.signature(getattr(t, m)).parameters) == \
                list(inspect.signature(getattr(Task, m)).parameters)[1:], (t.name, m)
    assert seen == set(GENERATE_TASKS) == {"qa", "pairwise", "attribute"}
    assert {GENERATE_TASKS[n].layout for n in seen} == set(pairs_format.LAYOUTS)


def test_generate_stage_does_not_branch_on_the_task():
    from projector.generate import stage

    body = inspect.getsource(stage.generate)
    assert "cfg.task ==" not in body and "cfg.judge" not in body and "attr =" not in body


def test_every_pairs_layout_has_one_train_task():
    assert set(TRAIN_TASKS) == set(pairs_format.LAYOUTS)
    for name, t in TRAIN_TASKS.items():
        assert t.name == name and t.mode in MODES and t.metric in ("val_ndcg@10", "val_map")
    assert TRAIN_TASKS["qa"].mode == "asymmetric" and TRAIN_TASKS["items"].metric == "val_map"


@pytest.mark.parametrize("flag", ["validation_queries", "train_queries", "train_labels", "validation_labels"])
def test_train_stage_names_sources_through_supervision(flag):
    """The stage reads your files in one place (projector.train.supervision), not flag by flag."""
    from projector.train import stage

    assert f"cfg.{flag}" not in inspect.getsource(stage.train)
