"""projector: learn a task-specific similarity on top of a frozen sentence encoder.

Pipeline stages, one module each, meeting only at on-disk datasets and one artifact format:

    python -m projector.generate   corpus  -> pairs dataset (LLM-made questions or judged pairs)
    python -m projector.train      pairs   -> projection folder (model.safetensors + projector.json)
    python -m projector.evaluate   folder  -> report against cosine and the other baselines

In production: ``projector.load(folder)`` (numpy + safetensors only for precomputed embeddings).
"""

__version__ = "0.1.0"

from projector.errors import ArtifactError, CorpusError, DataError, LLMError, ProjectorError


def load(path, **kwargs):
    """Load a trained projection folder for production use (see ``projector.loader``)."""
    from projector.loader import load as _load  # lazy: keep `import projector` free of torch

    return _load(path, **kwargs)


__all__ = ["load", "ProjectorError", "CorpusError", "LLMError", "DataError", "ArtifactError"]
