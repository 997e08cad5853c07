"""The one way in to the benchmarks: ``python benchmarks/run.py NAME [ARGS...]`` runs experiment NAME of the
registry (``benchmarks/experiments.py``); ``--list`` prints the registry (name, sets, cost, what, outputs, args).

    python benchmarks/run.py --list
    python benchmarks/run.py compare faq-perl-debian --anchors none   # compare.main(["faq-perl-debian", ...])
    python benchmarks/run.py scaling                                  # compare.main(["--scaling"])
    python benchmarks/run.py learning-curve nq-wiki --quick           # learning_curve.main(["run", "nq-wiki", ...])

NAME's recipe is called in this process as ``module.function(fixed + ARGS)``, or ``fixed + defaults`` without
ARGS (the arguments of the committed result), and its return value is the exit status. An unknown NAME: one line
naming the known ones, exit 2. Each recipe is a script of this folder whose own command (``python
benchmarks/compare.py ...``) does the same: the results it writes record the command they were made with.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from siblings import load  # noqa: E402  (benchmarks/ is not a package)

registry = load("experiments")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\n" + registry.table())
        return 0 if argv else 2
    if argv[0] == "--list":
        print(registry.table())
        return 0
    exp = registry.lookup(argv[0])
    if exp is None:
        print(f"run.py: unknown experiment {argv[0]!r}; known: {', '.join(registry.EXPERIMENTS)}", file=sys.stderr)
        return 2
    fn = getattr(load(exp.recipe.module), exp.recipe.function)
    rc = fn(registry.argv_for(exp, argv[1:]))
    return 0 if rc is None else rc


if __name__ == "__main__":
    raise SystemExit(main())
