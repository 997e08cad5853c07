"""The rows of an evaluation: what is compared (baselines and trained models) and the embeddings they score.

    rows, encoder = load_models(["runs/a", "runs/b"], None)    # one Row per trained folder, and their encoder
    emb = Embedder(encoder, 64); emb(texts, template)         # (n, d), embedded once per (texts, template)

All models of one evaluation must share an encoder: every row is scored on the same embeddings.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from projector.errors import ArtifactError


@dataclass
class Row:
    name: str
    scorer: object
    kind: str                         # "baseline" | "model"
    templates: tuple = (None, None)   # (query template, document template) the scorer's embeddings need
    log_path: str | None = None       # the model's train_log.jsonl, for the training curves
    info: dict | None = None          # a model's projector.json facts shown in the report


def load_models(paths: list[str], encoder: str | None) -> tuple[list[Row], str | None]:
    """Load each projection folder; return the rows and the encoder to embed with (all must share it).

    The encoder is ``encoder`` (``--encoder``) when given, else what the first model was trained with
    (projector.json ``encoder_source``); its identity must match every model's recorded ``encoder``.
    """
    import projector
    from projector.embed.encoder import encoder_identity

    rows, names, meta = [], set(), []
    for p in paths:
        if not (Path(p) / "projector.json").is_file():
            raise ArtifactError(f"--model {p}: no projector.json; give a folder written by projector.train")
        proj = projector.load(p)  # checks projector.json and the weights before anything reads them
        meta.append(proj.meta)
        t = getattr(proj, "templates", None) or meta[-1].get("templates") or {}
        name = Path(p).resolve().name
        while name in names:
            name += "'"
        names.add(name)
        log_file = Path(p) / "train_log.jsonl"
        m = meta[-1]
        info = {"path": str(p), "mode": m.get("mode"), "rank": m.get("rank"), "selected": m.get("selected"),
                "warning": m.get("warning"), "trained_on": (m.get("pairs") or {}).get("path")}
        rows.append(Row(name, proj, "model", (t.get("query"), t.get("document")),
                        str(log_file) if log_file.is_file() else None, info))
    if not rows:
        return rows, encoder
    if encoder is None:
        encoder = meta[0].get("encoder_source")
    ident = encoder_identity(encoder)
    for p, m in zip(paths, meta):
        if m.get("encoder") and m["encoder"] != ident:
            raise ArtifactError(f"--model {p} was trained on encoder {m['encoder']!r}, but evaluation embeds with "
                                f"{ident!r}; pass --encoder with that model's encoder, or evaluate models of "
                                "one encoder together")
    return rows, encoder


class Embedder:
    """Embeds (and caches in memory, by template) the texts of one evaluation with one encoder."""

    def __init__(self, encoder: str | None, batch_size: int):
        self.encoder, self.batch_size, self._memo = encoder, batch_size, {}

    def __call__(self, texts: list[str], template: str | None) -> np.ndarray:
        from projector.embed.embedding import embed

        key = (hash(tuple(texts)), len(texts), template)
        if key not in self._memo:
            self._memo[key] = embed(texts, self.encoder, template=template, batch_size=self.batch_size)
        return self._memo[key]
