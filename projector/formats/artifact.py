"""The artifact folder's schema: what ``projector.train.export`` writes and ``projector.loader`` reads.

    OUT/model.safetensors       tensors (``tensor_shapes``), header metadata format + version
    OUT/projector.json          the fields built by ``projector_json`` and checked by ``read_meta``
    OUT/sentence-transformers/  the same similarity as a SentenceTransformer folder

This module owns the format name and version, the file names and the projector.json fields. It imports
no torch (only the standard library and ``projector.formats.vectors``): the production loader stays numpy +
safetensors.
A field read by the loader is checked here for type and range; any problem is one ArtifactError naming the
file and what to do.
"""
from __future__ import annotations

import numpy as np

import json
import re
from pathlib import Path

from projector.errors import ArtifactError
from projector.formats.vectors import NORMALIZE, normalises_documents

FORMAT = "projector.projection"  # on-disk name since the first artifacts (not the module's path: it must not move)
READ_FORMATS = (FORMAT, "projector.train.projection")  # + what the redesign's rename wrote for a while
FORMAT_VERSION = 1  # what export writes
SUPPORTED_VERSIONS = (1,)  # what the loader reads
META_FILE = "projector.json"
MODEL_FILE = "model.safetensors"
ST_FOLDER = "sentence-transformers"
MODES = ("asymmetric", "symmetric")


def tensor_metadata() -> dict[str, str]:
    """The ``__metadata__`` of model.safetensors (safetensors metadata values are strings)."""
    return {"format": FORMAT, "format_version": str(FORMAT_VERSION)}


def tensor_names(mode: str) -> tuple[str, ...]:
    """The projection matrices of a ``mode`` projection, each (rank, dim)."""
    return ("W_q", "W_a") if mode == "asymmetric" else ("W",)


def folded_matrix(tensors: dict[str, np.ndarray]) -> np.ndarray:
    """M = W_aᵀ W_q (d, d): (M q)·d = (W_q q)·(W_a d)."""
    W_q = tensors["W_q"] if "W_q" in tensors else tensors["W"]
    W_a = tensors["W_a"] if "W_a" in tensors else tensors["W"]
    return (W_a.T.astype(np.float64) @ W_q.astype(np.float64)).astype(np.float32)


def tensor_shapes(meta: dict, with_folding: bool) -> dict[str, tuple[int, ...]]:
    """Every tensor model.safetensors must hold for ``meta`` (M, the folded query map, when present)."""
    d, k = meta["dim"], meta["rank"]
    want = {**{n: (k, d) for n in tensor_names(meta["mode"])}, "scale": (1,), "bias": (1,)}
    if with_folding:
        want["M"] = (d, d)
    return want


def projector_json(*, encoder: str, encoder_source, encoder_endpoint: dict | None = None, dim: int, rank: int, mode: str, normalize: str, scale: float,
                   bias: float, templates: dict, rewrite, task: str, selected, warning, metrics: dict,
                   val_ndcg_folded, training: dict, pairs: dict, sentence_transformers, model_sha256: str) -> dict:
    """The content of projector.json, in the order it is written."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "encoder": encoder,
        "encoder_source": encoder_source,  # what was passed to --encoder (None: the bundled model)
        "encoder_endpoint": encoder_endpoint,  # openai:MODEL: base_url, dimensions, api_key_env (never the key)
        "dim": dim,
        "rank": rank,
        "mode": mode,
        "input_normalisation": "l2",  # encoder vectors are L2-normalised before projection
        "normalize": normalize,  # which projected sides are L2-normalised (projector.formats.vectors)
        "scale": scale,
        "bias": bias,
        "templates": templates,
        "rewrite": rewrite,
        "task": task,
        "selected": selected,
        "warning": warning,
        "metrics": metrics,
        "folding": {
            "tensor": "M",
            "exact_for_ranking": not normalises_documents(normalize),
            "note": ("(M q)·d equals (W_q q)·(W_a d); ranking by it equals the model's ranking only when documents "
                     "are not re-normalised after projection (normalize 'query' or 'none')"),
            "val_ndcg@10_folded": val_ndcg_folded,
        },
        "training": training,
        "pairs": pairs,
        "sentence_transformers": sentence_transformers,
        "files": {MODEL_FILE: model_sha256},
    }


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_meta(path: Path) -> dict:
    """projector.json of the artifact folder ``path``, with every field the loader uses checked."""
    mpath = path / META_FILE
    if not mpath.is_file():
        raise ArtifactError(f"{mpath} not found: pass the folder written by python -m projector.train")
    try:
        meta = json.loads(mpath.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, absurd nesting
        raise ArtifactError(f"{mpath} is corrupt ({type(e).__name__}: {str(e)[:120]}); re-export it with "
                            "python -m projector.train") from e
    except OSError as e:
        raise ArtifactError(f"cannot read {mpath} ({e}); check its permissions") from e
    if not isinstance(meta, dict):
        raise ArtifactError(f"{mpath} is not a JSON object")
    if meta.get("format") not in READ_FORMATS:
        raise ArtifactError(f"{mpath} is not a projector projection (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if not _is_int(version) or version not in SUPPORTED_VERSIONS:
        raise ArtifactError(f"{mpath} has format_version {version!r}; this projector reads "
                            f"{SUPPORTED_VERSIONS}: upgrade projector or re-train")
    problems = _field_problems(meta)
    if problems:
        raise ArtifactError(f"{mpath}: {'; '.join(str(p)[:160] for p in problems)}; re-export it")
    return meta


def _field_problems(meta: dict) -> list[str]:
    problems = []
    if not (isinstance(meta.get("encoder"), str) and meta["encoder"]):
        problems.append(f"'encoder' must be the encoder's name, got {meta.get('encoder')!r}")
    if not (_is_int(meta.get("dim")) and meta["dim"] >= 1):
        problems.append(f"'dim' must be a positive integer, got {meta.get('dim')!r}")
    elif not (_is_int(meta.get("rank")) and 1 <= meta["rank"] <= meta["dim"]):
        problems.append(f"'rank' must be an integer in [1, dim], got {meta.get('rank')!r}")
    if meta.get("mode") not in MODES:
        problems.append(f"'mode' must be 'asymmetric' or 'symmetric', got {meta.get('mode')!r}")
    if meta.get("normalize", "both") not in NORMALIZE:
        problems.append(f"'normalize' must be 'both', 'query' or 'none', got {meta.get('normalize')!r}")
    if meta.get("input_normalisation", "l2") != "l2":
        problems.append(f"'input_normalisation' must be 'l2', got {meta.get('input_normalisation')!r}")
    templates = meta.get("templates")
    if templates is not None and not (isinstance(templates, dict) and set(templates) <= {"query", "document"}
                                      and all(v is None or isinstance(v, str) for v in templates.values())):
        problems.append(f"'templates' must be {{'query': str|null, 'document': str|null}}, got {templates!r}")
    if meta.get("encoder_source") is not None and not isinstance(meta["encoder_source"], str):
        problems.append(f"'encoder_source' must be a string or null, got {meta['encoder_source']!r}")
    if meta.get("rewrite") is not None and not isinstance(meta["rewrite"], dict):
        problems.append(f"'rewrite' must be an object or null, got {meta['rewrite']!r}")
    # Present, 'files' must hold a real sha256: null or "" would switch the checksum off while looking kept
    # (absent: an artifact written before checksums, loaded unchecked).
    files = meta.get("files")
    if "files" in meta and not (isinstance(files, dict) and isinstance(files.get(MODEL_FILE), str)
                                and re.fullmatch(r"[0-9a-f]{64}", files[MODEL_FILE])):
        problems.append(f"'files' must hold the sha256 of model.safetensors, got {files!r}")
    return problems
