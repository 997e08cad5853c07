"""Stage 1: an LLM writes training data from your corpus (questions a passage answers, or labels and judgments
under a criterion).

    python -m projector.generate --corpus data/python-reference.jsonl --id-field id --out runs/pairs

Rooms: ``stage`` (the command: config -> the task's jobs -> records -> pairs folder), ``config`` (its options, one
per flag), ``tasks`` (the registry: qa, pairwise, attribute, each its prompt, jobs, rows, manifest fields), ``qa``
(questions a passage answers), ``pairwise`` (candidate pairs judged under a criterion), ``attribute`` (one label
per item under a criterion), ``judging`` (the order of an attribute run: label set, your labelled items first, JSON
or option log-probabilities), ``labelquality`` (the LLM against your labels), ``teach`` (the LLM grades questions
and judges hard negatives: the ``projector teach`` stage), ``sampling`` (which passages to ask about).
"""

__all__ = ['GenerateConfig', 'generate', 'main', 'parse_args']


def __getattr__(name):
    # the stage's names, imported on first use: ``import projector.generate.X`` (or ``projector --help``) stays light
    if name in __all__:
        from projector.generate import stage

        return getattr(stage, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
