"""Write a trained projection as an artifact folder: projector's own format plus a sentence-transformers model.

    OUT/model.safetensors      W (symmetric) or W_q, W_a (asymmetric), each (k, d); scale (1,), bias (1,);
                               M (d, d) = W_aᵀ W_q, the query-side folding (below). float32, no pickle.
    OUT/projector.json         format version, encoder identity + dim, mode, rank, normalisation, templates,
                               rewrite prompt, training config, pairs fingerprint, validation metrics,
                               the selected candidate (and a warning if training lost to cosine), the
                               selection metric (NDCG@10; label mAP for items) and, for items, the label
                               counts per split and the classes trained on,
                               sha256 of model.safetensors (a torn or edited file is detected on load).
    OUT/sentence-transformers/ the same similarity as a SentenceTransformer: encoder + Dense (symmetric) or
                               encoder + Router{query: Dense(W_q), document: Dense(W_a)} (asymmetric), with
                               the templates as its "query"/"document" prompts.

Every file is written to a temporary name and renamed into place; projector.json is written last, so a
folder with a projector.json is complete. The schema (format version, file names, fields) is
``projector.formats.artifact``, which the loader reads with.

Using the sentence-transformers folder::

    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(f"{OUT}/sentence-transformers")                 # OUT: the artifact folder
    q = st.encode_query(["how do I read a file line by line?"])          # (1, k), unit length
    d = st.encode_document(["Use open() and iterate over the file object."])
    logit = scale * (q @ d.T) + bias                                     # scale, bias from projector.json

Query-side folding: keep the vector index you already have. ``M = W_aᵀ W_q`` (d×d) satisfies
``(M q)·d = (W_q q)·(W_a d)``, so scoring your existing document vectors d (the encoder's unit vectors) with
the transformed query ``M q`` equals the projection's dot product without re-embedding or re-projecting
any document::

    import numpy as np
    from safetensors.numpy import load_file
    M = load_file("OUT/model.safetensors")["M"]                          # (d, d)
    q = projector.embed.embedding.embed(["how do I read a file?"])                 # (1, d) or your own query vectors
    q_folded = q @ M.T                                                   # (1, d): search your index with it
    top = np.argsort(-(q_folded @ index_vectors.T), axis=1)[:, :10]

This is exact for ranking when the document side is not re-normalised after projection
(``--normalize query`` or ``none``; the query's norm is one number per query and does not change its
ranking). With the default ``--normalize both`` each document's projected length ‖W_a d‖ also divides its
score, which folding cannot reproduce: projector.json ``folding`` records ``exact_for_ranking: false`` and the
validation NDCG@10 the folded ranking actually reaches next to the full model's, so you can decide.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path


from projector.embed.endpoint import is_endpoint, spec_of
from projector.formats import artifact
from projector.files import write_bytes, write_json
from projector.formats.vectors import normalises_documents, normalises_queries

log = logging.getLogger("projector.train.export")


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its JSON header in a fixed order, so that equal tensors give equal bytes.

    safetensors keeps ``__metadata__`` in a Rust HashMap, whose order changes from process to process: two
    runs of the same command wrote model.safetensors files that differed in the header (and so in the sha256
    recorded in projector.json) although every tensor was equal. The header is re-serialised with the
    metadata keys sorted and padded with spaces to a multiple of 8 bytes, as safetensors itself does; tensor
    data and offsets are untouched.
    """
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None)
    ordered = {**({"__metadata__": dict(sorted(meta.items()))} if meta else {}), **dict(sorted(header.items()))}
    text = json.dumps(ordered, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_artifact(out, model, *, cfg, mode: str, pairs, summary: dict, encoder_identity: str) -> Path:
    """Write model.safetensors, projector.json and (unless disabled) the sentence-transformers folder."""
    from safetensors.numpy import save

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = model.tensors()
    tensors["M"] = artifact.folded_matrix(tensors)
    data = save(tensors, metadata=artifact.tensor_metadata())
    write_bytes(out / artifact.MODEL_FILE, canonical_safetensors(data))  # atomic, fsynced, mode per umask

    st = None
    endpoint = is_endpoint(cfg.encoder)  # no model folder to copy: only projector.load serves it
    if cfg.sentence_transformers and not endpoint:
        st = write_sentence_transformers(out / artifact.ST_FOLDER, model, cfg.encoder, cfg.query_template,
                                         cfg.document_template)
    from dataclasses import asdict

    meta = artifact.projector_json(
        encoder=encoder_identity, encoder_source=cfg.encoder,
        encoder_endpoint=spec_of(cfg.encoder).record() if endpoint else None, dim=model.dim, rank=model.rank, mode=mode,
        normalize=model.normalize, scale=float(tensors["scale"][0]), bias=float(tensors["bias"][0]),
        templates={"query": cfg.query_template, "document": cfg.document_template},
        rewrite=pairs.manifest.get("rewrite"), task=pairs.task, selected=summary["selected"],
        warning=summary["warning"],
        metrics={"validation": summary["validation"], "validated_on": summary.get("validated_on"),
                 "baseline": summary["baseline"], "test": summary.get("test"),
                 "metric": summary.get("metric", "val_ndcg@10")},
        val_ndcg_folded=summary.get("val_ndcg@10_folded"),
        training={"config": asdict(cfg), "best_epoch": summary["best_epoch"], "epochs_run": summary["epochs_run"],
                  "train_pairs": summary["train_pairs"], "trained_on": summary.get("trained_on"),
                  "train_seconds": summary["train_seconds"],
                  "pairs_per_second": summary["pairs_per_second"], "device": summary["device"],
                  "runs": summary.get("runs"), "items": summary.get("items")},
        pairs={"path": str(pairs.path), "layout": getattr(pairs, "layout", None), "fingerprint": pairs.fingerprint,
               "corpus_fingerprint": pairs.manifest.get("corpus_fingerprint"),
               "prompt_version": pairs.manifest.get("prompt_version")},
        sentence_transformers=st, model_sha256=_sha256(out / artifact.MODEL_FILE))
    write_json(out / artifact.META_FILE, meta)
    return out


def _prefix(template: str | None) -> str | None:
    """A template usable as a sentence-transformers prompt (text appended after it), else raise."""
    if not template:
        return None
    if not template.endswith("{text}") or template.count("{text}") != 1:
        raise ValueError(f"template {template!r} does not end in '{{text}}'")
    return template[: -len("{text}")]


def write_sentence_transformers(path: Path, model, encoder: str | None, query_template: str | None,
                                document_template: str | None) -> dict | None:
    """Save the projection as a SentenceTransformer folder; returns its description for projector.json.

    An asymmetric model (or any model whose two sides differ) is saved with a Router that has **no default
    route**: ``encode()`` without a side raises ("Could not determine route for task=None ..."), and only
    ``encode_query`` / ``encode_document`` (or ``encode(..., task="query"|"document")``) answer. Failing was
    chosen over a default because every default is wrong for one side: with sentence-transformers' own
    default ("document"), wrappers that call ``encode()`` for queries too (LangChain's HuggingFaceEmbeddings,
    Chroma's SentenceTransformerEmbeddingFunction, LlamaIndex's HuggingFaceEmbedding) silently ranked with
    the document map on both sides. The folder's README.md says how to call each side and points to
    projector.integrations. Both prompts are always present ("" without a template), so ``prompt_name``
    "query"/"document" is valid on every export.
    """
    import torch
    from torch import nn

    from projector.embed.encoder import load_encoder

    try:
        from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Router
    except ImportError:  # sentence-transformers < 5.x layout
        from sentence_transformers.models import Dense, Normalize
        Router = getattr(__import__("sentence_transformers.models", fromlist=["Router"]), "Router", None)
    from sentence_transformers import SentenceTransformer

    try:
        prompts = {"query": _prefix(query_template) or "", "document": _prefix(document_template) or ""}
    except ValueError as e:
        log.warning("not writing %s: %s (sentence-transformers prompts are prefixes)", path, e)
        return {"path": None, "skipped": str(e)}
    enc = load_encoder(encoder, device="cpu")
    base = list(enc.children())
    if not isinstance(base[-1], Normalize):
        base.append(Normalize())  # projector projects L2-normalised encoder vectors
    t = model.tensors()
    dense = lambda W: Dense(model.dim, model.rank, bias=False, activation_function=nn.Identity(),
                            init_weight=torch.tensor(W))
    q_norm = normalises_queries(model.normalize)
    d_norm = normalises_documents(model.normalize)
    if "W" in t and q_norm == d_norm:
        modules = base + [dense(t["W"])] + ([Normalize()] if q_norm else [])
        layout = "encoder + Dense" + (" + Normalize" if q_norm else "")
    else:
        if Router is None:
            log.warning("sentence-transformers here has no Router (needs >= 5.0); not writing %s", path)
            return {"path": None, "skipped": "sentence-transformers < 5.0 has no Router"}
        W_q, W_a = (t["W"], t["W"]) if "W" in t else (t["W_q"], t["W_a"])
        router = Router.for_query_document(query_modules=[dense(W_q)] + ([Normalize()] if q_norm else []),
                                           document_modules=[dense(W_a)] + ([Normalize()] if d_norm else []),
                                           default_route=None, allow_empty_key=False)  # encode() must name a side
        modules = base + [router]
        layout = "encoder + Router{query: Dense(W_q), document: Dense(W_a)}"
    st = SentenceTransformer(modules=modules, device="cpu", prompts=prompts)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    st.save(str(tmp))
    (tmp / "README.md").write_text(st_readme(routed="Router" in layout), encoding="utf-8")
    old = path.with_name(f".{path.name}.{uuid.uuid4().hex}.old")
    if path.exists():
        os.replace(path, old)  # swap: the folder is never half-written under its real name
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return {"path": path.name, "layout": layout, "prompts": prompts,
            "route": "required: encode() without task raises" if "Router" in layout else "one route for both sides",
            "score": "scale * (encode_query(q) @ encode_document(d).T) + bias"}


def st_readme(routed: bool) -> str:
    """The README.md of the sentence-transformers folder: how to call each side, and what fails."""
    sides = ("This model has two sides, a query map and a document map. `model.encode(texts)` **raises** on purpose "
             "(no default route): a default would embed one side with the other side's map, silently.\n\n"
             if routed else "Queries and documents share one map; `encode_query`/`encode_document` still apply "
             "the recorded templates.\n\n")
    return ("# projector projection (sentence-transformers export)\n\n" + sides +
            "```python\nfrom sentence_transformers import SentenceTransformer\n"
            "st = SentenceTransformer(\"path/to/this/folder\")\n"
            "q = st.encode_query([\"how do I read a file?\"])          # the query map\n"
            "d = st.encode_document([\"Use open() and iterate.\"])    # the document map\n```\n\n"
            "LangChain, LlamaIndex, Chroma: `projector.integrations` (`pip install \"projector[integrations]\"`) "
            "gives each library's embedding class with both sides. LangChain's own `HuggingFaceEmbeddings` works "
            "when told the route: `encode_kwargs={\"task\": \"document\", \"prompt_name\": \"document\"}, "
            "query_encode_kwargs={\"task\": \"query\", \"prompt_name\": \"query\"}`. Scores: "
            "`scale * (q @ d.T) + bias` with scale and bias from ../projector.json.\n")
