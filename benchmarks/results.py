"""What every benchmark result records the same way: folders as the repository sees them, and when it ran.

    load("results")                               # in a script of benchmarks/ (siblings.load)
    from benchmarks_results import in_repo, recorded, utc_now
    in_repo(REPO / "benchmarks" / "pairs")        # "benchmarks/pairs"; a folder outside the repository: None
    recorded("/data/runs/x")                      # "<outside the repository>/x"
    utc_now()                                     # "2026-12-07 06:55 UTC"

Committed results must name no machine's paths: a folder inside the repository is recorded relative to it.
compare.py records a folder outside as it was given (its config's own folders), learning_curve.py and the
rest by its name only (``recorded``).
"""
from __future__ import annotations

import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def in_repo(path) -> str | None:
    """``path`` relative to the repository, as a POSIX path; None when it lies outside."""
    p = Path(path).resolve()
    return p.relative_to(REPO).as_posix() if p.is_relative_to(REPO) else None


def utc_now() -> str:
    """The time a result is stamped with: minutes, UTC."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def recorded(path) -> str:
    """A folder as results record it: relative to the repository, else only its name (no machine paths)."""
    return in_repo(path) or f"<outside the repository>/{Path(path).resolve().name}"
