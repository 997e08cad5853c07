"""Stage 2: train a projection on a pairs or items folder, pick the best candidate on validation, export it.

    python -m projector.train --pairs runs/pairs --out runs/model

Rooms: ``stage`` (the command: config -> data -> candidates -> selection -> export), ``config`` (its options, one
per flag), ``tasks`` (qa, pairs, items: each one's default mode, loss, metric, embedding, test split),
``supervision`` (what trains and what validates: the folder's LLM-written splits or your real queries and labels),
``data`` (every source embedded), ``crossfit`` and ``labelmodel`` (your labels validating; the LLM's relabelled),
``fit`` (the training loop and its validation), ``inputs`` (the loop's embedded inputs), ``batch`` (one batch's
loss, hard negatives), ``checkpoint`` (what a re-run resumes from), ``projection`` (the model and its pure tensor
math), ``candidates`` (closed forms, the noise gate, calibration), ``labelfit`` (items: labels to pairs, LDA),
``distributed`` (torchrun), ``export`` (the artifact writer).
"""

__all__ = ['TrainConfig', 'main', 'parse_args', 'train']


def __getattr__(name):
    # the stage's names, imported on first use: ``import projector.train.X`` (or ``projector --help``) stays light
    if name in __all__:
        from projector.train import stage

        return getattr(stage, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
