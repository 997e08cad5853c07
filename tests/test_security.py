"""What projector claims about loading untrusted files, checked on its source (every projector/**/*.py):

  - no pickle: no import of pickle / cPickle / dill / joblib / marshal / shelve (safetensors, JSON, .npy);
  - torch.load only with weights_only=True; numpy.load never with allow_pickle other than False;
  - trust_remote_code only ever False (no model repository's Python runs here);
  - no eval / exec, no shell=True, no os.system / os.popen, no yaml.load (safe_load only).

The checks walk the syntax tree, so comments and strings (documentation saying "no pickle") do not count, and
a call written over several lines is still seen. The checker is itself tested on snippets that break each rule.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "projector"
BANNED_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "marshal", "shelve", "cloudpickle"}


def _name(node) -> str:
    """Dotted name of a call's function: torch.load, np.load, eval, ..."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def problems(source: str, filename: str = "<snippet>") -> list[str]:
    found = []
    tree = ast.parse(source, filename)
    numpy_names, torch_names = {"np", "numpy"}, {"torch"}
    for node in ast.walk(tree):
        at = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in BANNED_MODULES:
                    found.append(f"{at}: imports {a.name}")
                if a.name == "numpy":
                    numpy_names.add(a.asname or "numpy")
                if a.name == "torch":
                    torch_names.add(a.asname or "torch")
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in BANNED_MODULES:
                found.append(f"{at}: imports from {node.module}")
            if node.module in ("numpy", "torch") and any(a.name == "load" for a in node.names):
                found.append(f"{at}: imports load from {node.module} (call it as {node.module}.load, checked here)")
        elif isinstance(node, ast.Call):
            fn = _name(node.func)
            head, _, last = fn.rpartition(".")
            if fn in ("eval", "exec") or fn in ("os.system", "os.popen"):
                found.append(f"{at}: calls {fn}")
            if last == "load" and head in torch_names and not _is_const(_kw(node, "weights_only"), True):
                found.append(f"{at}: {fn} without weights_only=True")
            if last == "load" and head in numpy_names:
                ap = _kw(node, "allow_pickle")
                if ap is not None and not _is_const(ap, False):
                    found.append(f"{at}: {fn} with allow_pickle not False")
            if fn in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
                found.append(f"{at}: {fn} (use yaml.safe_load)")
            trc = _kw(node, "trust_remote_code")
            if trc is not None and not _is_const(trc, False):
                found.append(f"{at}: trust_remote_code={ast.unparse(trc)}")
            shell = _kw(node, "shell")
            if shell is not None and not _is_const(shell, False):
                found.append(f"{at}: {fn}(shell={ast.unparse(shell)})")
            for k in node.keywords:  # **{"trust_remote_code": True}
                if k.arg is None and isinstance(k.value, ast.Dict):
                    for key, value in zip(k.value.keys, k.value.values):
                        if isinstance(key, ast.Constant) and key.value == "trust_remote_code" \
                                and not _is_const(value, False):
                            found.append(f"{at}: trust_remote_code={ast.unparse(value)} via **dict")
    return found


def test_projector_source_loads_no_code_from_data():
    files = sorted(SOURCE.rglob("*.py"))
    assert len(files) >= 15, files  # the whole package, not an empty glob
    found = [p for f in files for p in problems(f.read_text(encoding="utf-8"), str(f.relative_to(SOURCE.parent)))]
    assert found == []


@pytest.mark.parametrize("snippet", [
    "import pickle",
    "import dill as d",
    "from joblib import load",
    "import torch\nx = torch.load(path)",
    "import torch as T\nx = T.load(path, weights_only=False)",
    "import torch\nx = torch.load(\n    path,\n    map_location='cpu')",
    "import numpy as np\nx = np.load(p, allow_pickle=True)",
    "import numpy\nx = numpy.load(p, allow_pickle=flag)",
    "from numpy import load",
    "AutoModel.from_pretrained(name, trust_remote_code=True)",
    "SentenceTransformer(name, **{'trust_remote_code': True})",
    "SentenceTransformer(name, trust_remote_code=allow)",
    "eval(text)",
    "exec(code)",
    "import subprocess\nsubprocess.run(cmd, shell=True)",
    "import os\nos.system(cmd)",
    "import yaml\nyaml.load(s)",
])
def test_the_checker_catches_each_rule(snippet):
    assert problems(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "import torch\nx = torch.load(path, weights_only=True)",
    "import numpy as np\nx = np.load(p, allow_pickle=False)\ny = np.load(p)",
    "model.eval()",
    "SentenceTransformer(name, trust_remote_code=False)",
    "'''no pickle, no torch.load(path), no trust_remote_code=True'''",
    "# import pickle",
    "import subprocess\nsubprocess.run(cmd)",
    "import yaml\nyaml.safe_load(s)",
])
def test_the_checker_passes_safe_code(snippet):
    assert problems(snippet) == []
