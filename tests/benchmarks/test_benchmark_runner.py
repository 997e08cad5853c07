"""benchmarks/run.py and its registry (benchmarks/experiments.py): every script of benchmarks/ is a registered recipe
or a named helper, --list prints the table, an unknown name is one line and exit 2, and one cheap experiment
(scaling at 600 pairs: one child process, seconds) runs through the runner end to end."""
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))
from siblings import load  # noqa: E402  (benchmarks/ is not a package)

registry = load("experiments")
runner = load("run")


def _tree(module: str) -> ast.Module:
    return ast.parse((BENCH / f"{module}.py").read_text())


def _has_main_guard(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body)


def test_every_benchmark_script_is_a_registered_recipe_or_a_named_helper():
    recipes = {e.recipe.module for e in registry.EXPERIMENTS.values()}
    assert not recipes & set(registry.HELPERS), recipes & set(registry.HELPERS)
    modules = {p.stem for p in BENCH.glob("*.py")}
    assert modules - recipes - set(registry.HELPERS) == set(), "unregistered: add to EXPERIMENTS or HELPERS"
    assert recipes | set(registry.HELPERS) <= modules, "registered but missing"
    for m in modules:
        if _has_main_guard(_tree(m)) and m != "run":
            assert m in recipes, f"benchmarks/{m}.py has a __main__ entry point but no experiment runs it"


def test_every_recipe_names_a_function_of_its_module_and_known_sets():
    for e in registry.EXPERIMENTS.values():
        defined = {n.name for n in _tree(e.recipe.module).body if isinstance(n, ast.FunctionDef)}
        assert e.recipe.function in defined, (e.name, e.recipe)
        assert set(e.sets) <= set(registry.SETS), (e.name, e.sets)
        assert e.kind in ("measure", "prepare") and e.what and e.outputs and e.cpu, e.name
        assert re.fullmatch(r"[a-z][a-z0-9-]*", e.name), e.name
    for s in registry.SETS.values():
        assert s.kind in ("retrieval", "criterion") and s.found
        for folder in s.pairs:
            assert (BENCH / "pairs" / folder).is_dir(), (s.name, folder)


def test_the_arguments_a_recipe_gets():
    adapters = registry.lookup("adapters")
    assert registry.argv_for(adapters, []) == ["--adapters", "faq-perl-debian"]    # the committed result's
    assert registry.argv_for(adapters, ["nq-wiki"]) == ["--adapters", "nq-wiki"]   # yours replace the defaults
    assert registry.argv_for(registry.lookup("learning-curve"), ["nq-wiki", "--quick"]) == ["run", "nq-wiki", "--quick"]


def test_list_prints_every_experiment_and_set():
    p = subprocess.run([sys.executable, str(BENCH / "run.py"), "--list"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    names = [line.split()[0] for line in p.stdout.splitlines() if line and not line.startswith(" ")]
    assert set(registry.EXPERIMENTS) <= set(names) and set(registry.SETS) <= set(names)
    assert "benchmarks/results/scaling.md" in p.stdout and "found: benchmark_dir" in p.stdout


def test_an_unknown_name_is_one_line_naming_the_known_ones_and_exit_2():
    p = subprocess.run([sys.executable, str(BENCH / "run.py"), "no-such-benchmark"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "'no-such-benchmark'" in lines[0]
    assert all(name in lines[0] for name in registry.EXPERIMENTS)


def test_the_docs_run_only_registered_experiments():
    cited = set()
    for doc in (REPO / "README.md", REPO / "docs" / "benchmarks.md", BENCH / "README.md"):
        cited |= set(re.findall(r"python benchmarks/run\.py ([a-z][a-z0-9-]*)", doc.read_text()))
    assert cited, "the docs should name the runner"
    assert cited <= set(registry.EXPERIMENTS), cited - set(registry.EXPERIMENTS)


def test_scaling_runs_through_the_runner(tmp_path, capsys):
    pytest.importorskip("torch")
    assert runner.main(["scaling", "--scaling-sizes", "600", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "scaling.json").read_text())
    assert len(rows) == 1 and "error" not in rows[0] and rows[0]["pairs_per_s"] > 0
    md = (tmp_path / "scaling.md").read_text()
    assert "| 600 |" in md and md.strip() in capsys.readouterr().out
