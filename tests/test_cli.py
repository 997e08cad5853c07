"""projector.cli: flags built from each stage's config dataclass, the `projector` command, the exit codes."""
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import typing

import pytest

from openai_server import FakeOpenAI
from projector import __main__ as command
from projector import cli
from projector.evaluate import stage as evaluate
from projector.generate import stage as generate
from projector.generate import teach
from projector.train import stage as train

STAGES = {"generate": (generate, generate.GenerateConfig), "teach": (teach, teach.TeachConfig),
          "train": (train, train.TrainConfig),
          "evaluate": (evaluate, evaluate.EvalConfig)}
CONFIGS = [config for _, config in STAGES.values()]


def squeeze(text: str) -> str:
    """Text without whitespace: argparse re-wraps help to the terminal's width."""
    return "".join(text.split())


def required(config) -> dict:
    return {f.name: f"given-{f.name}" for f in dataclasses.fields(config)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


def argv_of(config, values: dict) -> list[str]:
    """The command line that asks for ``values`` (field name -> value)."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    argv = []
    for name, value in values.items():
        flag = cli.flag_of(fields[name])
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list):
            for v in value:
                argv += [flag, str(v)]
        else:
            argv += [flag, str(value)]
    return argv


def other_value(f: dataclasses.Field, annotation):
    """A value unlike the field's default, of the field's type."""
    if f.name == "encoder":  # an endpoint encoder: the --encoder-* flags are refused beside a local one
        return "openai:other-model"
    if f.metadata.get("choices"):
        return next(c for c in reversed(f.metadata["choices"]) if c != f.default)
    if typing.get_origin(annotation) is list:
        return ["first", "second"]
    kind = next((a for a in typing.get_args(annotation) if a is not type(None)), annotation)  # int | None -> int
    if kind is bool:
        return not f.default
    if kind is int:
        return 7 if f.default is None else f.default + 3
    if kind is float:
        return 0.25 if f.default is None else f.default + 0.25
    return f"value-of-{f.name}"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_every_field_has_help(config):
    for f in dataclasses.fields(config):
        assert f.metadata.get("help", "").strip(), f"{config.__name__}.{f.name} has no help"


@pytest.mark.parametrize("stage", STAGES)
def test_help_shows_every_field_in_full_with_its_default(stage, capsys):
    module, config = STAGES[stage]
    assert command.main([stage, "--help"]) == 0
    shown = squeeze(capsys.readouterr().out)
    assert squeeze(f"usage: projector {stage}") in shown
    for f in dataclasses.fields(config):
        assert squeeze(cli.flag_of(f)) in shown
        assert squeeze(f.metadata["help"]) in shown, f"--help cuts {f.name}'s help"
        if f.default is not dataclasses.MISSING and not isinstance(f.default, bool):
            assert squeeze(f"{f.metadata['help']} (default: {f.default})") in shown


def test_train_help_keeps_multi_line_explanations(capsys):
    """The regex that read help from comments cut --threads after "...1 can be"."""
    assert train.main(["--help"]) == 0
    shown = squeeze(capsys.readouterr().out)
    assert squeeze("On a busy machine 1 can be several times faster than oversubscribed cores (measured: 12 vs "
                   "70-150 ms per step at load 6 on 2 cores) (default: None)") in shown
    assert squeeze("--sentence-transformers, --no-sentence-transformers") in shown


@pytest.mark.parametrize("stage", STAGES)
def test_parsing_only_the_required_flags_gives_the_dataclass_defaults(stage):
    module, config = STAGES[stage]
    given = required(config)
    assert module.parse_args(argv_of(config, given)) == config(**given)


@pytest.mark.parametrize("stage", STAGES)
def test_every_flag_reaches_its_field_with_its_type(stage):
    module, config = STAGES[stage]
    hints = typing.get_type_hints(config)
    values = {**required(config), **{f.name: other_value(f, hints[f.name]) for f in dataclasses.fields(config)
                                     if f.name not in required(config)}}
    parsed = module.parse_args(argv_of(config, values))
    assert parsed == config(**values)
    for name, value in values.items():
        assert type(getattr(parsed, name)) is type(value), name


def test_the_flags_people_use_keep_their_names_and_meaning():
    g = generate.parse_args(["--corpus", "c", "--out", "o", "--max-passages", "3", "--all", "--rewrite"])
    assert g.max_passages is None and g.rewrite  # --all wins over --max-passages, in either order
    assert generate.parse_args(["--corpus", "c", "--out", "o", "--all", "--max-passages", "3"]).max_passages is None
    t = train.parse_args(["--pairs", "p", "--out", "o", "--no-sentence-transformers", "--rank", "8", "--lr", "3e-3"])
    assert (t.sentence_transformers, t.rank, t.lr) == (False, 8, 3e-3)
    e = evaluate.parse_args(["--model", "a", "--model", "b", "--split", "validation"])
    assert e.models == ["a", "b"] and e.split == "validation"
    assert evaluate.parse_args([]).models == [] is not evaluate.parse_args([]).models  # a fresh list each time


@pytest.mark.parametrize("argv, words", [
    (["train", "--pairs", "p", "--out", "o", "--mode", "sideways"], "invalid choice: 'sideways'"),
    (["train", "--out", "o"], "required: --pairs"),
    (["generate", "--corpus", "c", "--out", "o", "--concurrency", "many"], "invalid int value: 'many'"),
    (["evaluate", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_a_bad_flag_is_one_line_and_exit_2(argv, words, capsys):
    assert command.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"projector.{argv[0]}: error: ") and words in err[0], err
    assert err[0].endswith(f"(see projector {argv[0]} --help)")


def test_projector_help_lists_each_stage_with_one_line(capsys):
    assert command.main(["--help"]) == 0
    out = capsys.readouterr().out
    for stage, (module, _) in STAGES.items():
        assert squeeze(f"{stage}{module.__doc__.splitlines()[0]}") in squeeze(out)
    assert command.main([]) == 2 and command.main(["fit"]) == 2
    assert [line for line in capsys.readouterr().err.splitlines()] == [
        "projector: error: the following arguments are required: STAGE (see projector --help)",
        "projector: error: argument STAGE: invalid choice: 'fit' (choose from 'generate', 'teach', 'train', 'evaluate') "
        "(see projector --help)"]


def script(name: str) -> str:
    """An installed console script (pyproject.toml's [project.scripts]), beside this Python's own."""
    found = shutil.which(name, path=os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")]))
    assert found, f"{name} is not installed: pip install -e . puts pyproject.toml's console scripts on PATH"
    return found


@pytest.mark.parametrize("cmd", [["projector", "generate"], ["projector-generate"]])
def test_installed_scripts_print_one_line_and_exit_2(cmd, tmp_path):
    """projector-generate used to call generate.main without cli.run: a traceback and exit 0."""
    missing = tmp_path / "missing.jsonl"
    r = subprocess.run([script(cmd[0]), *cmd[1:], "--corpus", str(missing), "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [f"projector.generate: error: {missing}: no such file or folder. Give "
                                             "--corpus a JSONL/CSV/Parquet file, a folder of .txt/.md files, or a "
                                             "saved datasets folder."]
    assert not (tmp_path / "x").exists()  # a typo in --corpus leaves no empty output folder behind


def test_python_dash_m_projector_is_the_same_command(tmp_path, repo):
    r = subprocess.run([sys.executable, "-m", "projector", "train", "--pairs", str(tmp_path / "none"), "--out",
                        str(tmp_path / "m")], capture_output=True, text=True, cwd=repo, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("projector.train: error: ") and "manifest.json" in r.stderr


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": f"Document {i} explains idea {i} in plain words. "
                                                                  f"A second sentence adds detail {i}."}) + "\n"
                              for i in range(20)), encoding="utf-8")
    with FakeOpenAI(delay=0.3) as srv:
        proc = subprocess.Popen([script("projector"), "generate", "--corpus", str(corpus), "--id-field", "id", "--out",
                                 str(tmp_path / "out"), "--base-url", srv.base_url, "--model", "fake-model",
                                 "--concurrency", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                # Ctrl-C as a terminal sends it: a suite started in the background by a
                                # non-interactive shell inherits SIGINT ignored, and Python then never raises
                                # KeyboardInterrupt (the run went on to exit 0: the "flaky" failure)
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 240
        while time.time() < deadline and srv.requests < 2 and proc.poll() is None:
            time.sleep(0.05)
        assert srv.requests >= 2, "the run never reached the LLM"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "projector.generate: interrupted; re-run the same command to resume."
    assert "Traceback" not in err
