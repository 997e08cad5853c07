"""benchmarks/ is a folder of scripts, not a package: ``load("build")`` imports benchmarks/build.py once, as module
``benchmarks_build`` (the name every script and test uses), so the scripts share one copy of each sibling.

    sys.path.insert(0, str(Path(__file__).resolve().parent))   # in a script of benchmarks/
    from siblings import load
    build = load("build")
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(name: str):
    """benchmarks/NAME.py as module ``benchmarks_NAME`` (registered before it executes: dataclasses look it up)."""
    key = f"benchmarks_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, HERE / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[key] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            del sys.modules[key]
            raise
    return sys.modules[key]
