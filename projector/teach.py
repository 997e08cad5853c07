"""Stage 1b: the LLM grades generated questions and judges hard negatives (code: ``projector.generate.teach``).

This module is only the stage's command name, so that ``python -m projector.teach`` and ``projector teach`` work
like the other stages.
"""
from projector.generate.teach import TeachConfig, main, parse_args, teach

__all__ = ["TeachConfig", "main", "parse_args", "teach"]

if __name__ == "__main__":
    raise SystemExit(main())
