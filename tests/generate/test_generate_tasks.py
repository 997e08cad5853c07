"""The generate task registry: every task generate can run has one entry with the whole protocol, and the stage
goes through the entries (a task's methods, not branches on --task/--judge), so a new task is one entry."""
import inspect
import itertools

from projector.formats import pairs as pairs_format
from projector.generate import GenerateConfig
from projector.generate.tasks import TASKS, Task, task_for, task_name


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
        assert type(t) is TASKS[task_name(cfg)] and t.name == task_name(cfg)
        assert t.layout in pairs_format.LAYOUTS and t.prompt.version
        for m in methods:  # the same signature as the protocol's, so the stage can call any task alike
            assert list(inspect.signature(getattr(t, m)).parameters) == \
                list(inspect.signature(getattr(Task, m)).parameters)[1:], (t.name, m)
    assert seen == set(TASKS) == {"qa", "pairwise", "attribute"}
    assert {TASKS[n].layout for n in seen} == set(pairs_format.LAYOUTS)


def test_generate_stage_does_not_branch_on_the_task():
    from projector.generate import stage

    body = inspect.getsource(stage.generate)
    assert "cfg.task ==" not in body and "cfg.judge" not in body and "attr =" not in body
