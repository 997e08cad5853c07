"""Stage 3: compare trained projections with cosine and the training-free baselines on held-out data.

    python -m projector.evaluate --model runs/model --pairs runs/pairs

Rooms: ``stage`` (the command), ``data`` (the queries, corpus and relevance a run ranks), ``rows`` (the models
compared and the embeddings they score), ``evaluators`` (one scorer on fixed embeddings -> a flat metric dict),
``baselines`` (what users would use instead), ``labelled`` (human-judged pairs), ``report`` and ``report_html``
(report.md/json/html).
"""

__all__ = ['EvalConfig', 'main', 'parse_args', 'run']


def __getattr__(name):
    # the stage's names, imported on first use: ``import projector.evaluate.X`` (or ``projector --help``) stays light
    if name in __all__:
        from projector.evaluate import stage

        return getattr(stage, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
