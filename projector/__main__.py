"""The ``projector`` command: one subcommand per pipeline stage.

    projector generate --corpus data/python-reference.jsonl --id-field id --out runs/pairs --max-passages 60
    projector teach --pairs runs/pairs --out runs/taught       # optional: the LLM grades them
    projector train --pairs runs/pairs --out runs/model
    projector evaluate --model runs/model --pairs runs/pairs

``projector STAGE ...`` is ``python -m projector.STAGE ...`` (and the ``projector-STAGE`` script): the same flags,
the same exit codes (0 done, 2 a user error printed as one line, 130 interrupted). ``python -m projector`` works too.
"""
import importlib
import importlib.util
import pydoc
import sys

import projector
from projector.cli import Parser, UsageError

STAGES = ("generate", "teach", "train", "evaluate")
# where each stage's code and docstring live (``projector.STAGE`` is its package or entry module)
STAGE_MODULES = {"generate": "projector.generate.stage", "teach": "projector.generate.teach",
                 "train": "projector.train.stage", "evaluate": "projector.evaluate.stage"}


def _overview() -> Parser:
    """The top-level parser: only for ``--help``, ``--version`` and a missing or unknown stage."""
    p = Parser(prog="projector", description=pydoc.splitdoc(projector.__doc__)[0],
               epilog="projector STAGE --help lists the stage's options. Each stage also runs as python -m "
                      "projector.STAGE and projector-STAGE. Exit codes: 0 done, 2 a user error (one line), "
                      "130 interrupted.")
    p.add_argument("--version", action="version", version=f"projector {projector.__version__}")
    stages = p.add_subparsers(title="stages", metavar="STAGE", dest="stage", required=True)
    for name in STAGES:
        # the first line of the stage module's docstring, read without importing it (train imports torch)
        origin = importlib.util.find_spec(STAGE_MODULES[name]).origin
        stages.add_parser(name, help=pydoc.synopsis(origin) or name, add_help=False)
    return p


def main(argv=None) -> int:
    """Run ``projector STAGE ARGS...``; the exit code is the stage's."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in STAGES:
        stage = importlib.import_module(f"projector.{argv[0]}")
        return stage.main(argv[1:], prog=f"projector {argv[0]}")
    try:
        _overview().parse_args(argv[:1])  # prints --help / --version and exits 0; anything else is an error
    except SystemExit as e:
        return e.code or 0
    except UsageError as e:
        print(f"projector: error: {e}", file=sys.stderr)
        return 2
    return 2  # not reached: a known stage was handled above


if __name__ == "__main__":
    raise SystemExit(main())
