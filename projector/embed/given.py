"""Vectors you already have: your passages' vectors, exported from your vector store, used instead of
embedding the passages again (``--passage-vectors FILE`` of train and evaluate).

    projector train --pairs runs/pairs --out runs/model --encoder openai:text-embedding-3-small \\
        --passage-vectors index.parquet                   # columns id, vector (--passage-vectors-columns)

The file: Parquet (a list or fixed-size-list column of floats) or JSON lines, one row per passage, its id (the
pairs folder's ``passage_id``; a BEIR corpus' ``_id``) and its vector from the encoder named by ``--encoder``,
which still embeds the queries. How: the vectors are written into the embedding cache under that encoder's
identity and each template the run uses, keyed by the passage's text (``projector.embed.cache``), so ``embed()``
finds every passage there and sends none of them to the encoder. A missing id, a vector of another dimension
than the encoder's (or the cache's), a NaN: a DataError naming the file and the fix, before anything is
embedded. Keys already in the cache are left as they are.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from projector.cli import option
from projector.errors import DataError

log = logging.getLogger("projector.embed.given")


@dataclass(kw_only=True)
class PassageVectorsOptions:
    """The ``--passage-vectors`` flags of train and evaluate."""

    passage_vectors: str | None = option(None, help="your passages' vectors, e.g. exported from your vector store: "
                                                    "Parquet or JSONL with an id and a vector column, from the "
                                                    "encoder --encoder names (which still embeds the queries)")
    passage_vectors_columns: str = option("id,vector", help="the id and vector columns of --passage-vectors")


def read_vectors(path, columns: str = "id,vector") -> tuple[list[str], np.ndarray]:
    """(ids, (n, d) float32 vectors) of a Parquet or JSONL file; DataError naming what is wrong."""
    path = Path(path)
    try:
        id_col, vec_col = (c.strip() for c in columns.split(","))
    except ValueError:
        raise DataError(f"--passage-vectors-columns {columns!r}: write ID_COLUMN,VECTOR_COLUMN, e.g. id,vector") from None
    if not path.is_file():
        raise DataError(f"--passage-vectors {path}: no such file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # noqa: BLE001 -- pyarrow's many error types all mean "not a readable Parquet"
            raise DataError(f"--passage-vectors {path}: not a readable Parquet file ({str(e)[:120]})") from None
        names = table.column_names
        if id_col not in names or vec_col not in names:
            raise DataError(f"--passage-vectors {path} has columns {names}; it needs {id_col!r} and {vec_col!r} "
                            "(or name yours with --passage-vectors-columns ID,VECTOR)")
        ids, rows = [str(i) for i in table.column(id_col).to_pylist()], table.column(vec_col).to_pylist()
    else:
        ids, rows = [], []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                    ids.append(str(r[id_col]))
                    rows.append(r[vec_col])
                except (ValueError, KeyError, TypeError):
                    raise DataError(f"--passage-vectors {path} line {n}: not a JSON object with {id_col!r} and "
                                    f"{vec_col!r}") from None
    try:
        x = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError):
        raise DataError(f"--passage-vectors {path}: column {vec_col!r} must hold vectors of one length") from None
    if x.ndim != 2 or len(x) == 0:
        raise DataError(f"--passage-vectors {path}: column {vec_col!r} must hold vectors of one length (got shape "
                        f"{x.shape})")
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        raise DataError(f"--passage-vectors {path}: the vectors of ids {[ids[i] for i in bad[:5]]} hold NaN/inf")
    if len(set(ids)) != len(ids):
        raise DataError(f"--passage-vectors {path}: ids repeat; one row per passage")
    return ids, x


def seed_passage_vectors(path, ids: list[str], texts: list[str], encoder, templates, cache_dir=None,
                         columns: str = "id,vector") -> int:
    """Put the vectors of passages ``ids`` (texts ``texts``) from ``path`` into ``encoder``'s cache under each of
    ``templates``; returns how many were new. Every id must be in the file, every vector of the encoder's
    dimension."""
    from projector.embed.cache import cache_keys, default_cache_dir, open_cache
    from projector.embed.encoder import encoder_dim, encoder_identity, load_encoder
    from projector.embed.endpoint import is_endpoint, spec_of
    from projector.formats.vectors import l2_normalise

    have, x = read_vectors(path, columns)
    row = {i: n for n, i in enumerate(have)}
    missing = [i for i in ids if str(i) not in row]
    if missing:
        raise DataError(f"--passage-vectors {path} has no vector for {len(missing)} of the {len(ids)} passages "
                        f"(e.g. ids {missing[:3]}): export every passage of the corpus, with the ids it uses")
    identity = encoder_identity(encoder)
    cache = open_cache(Path(cache_dir or default_cache_dir()), identity)
    d = x.shape[1]
    if is_endpoint(encoder):
        expected = spec_of(encoder).dimensions or cache.dim
    else:
        expected = encoder_dim(load_encoder(encoder))
    if expected is not None and expected != d:
        raise DataError(f"--passage-vectors {path} holds {d}-d vectors, but {identity} gives {expected}-d ones: "
                        "name the encoder that made them (--encoder, --encoder-dimensions)")
    if cache.dim is not None and cache.dim != d:
        raise DataError(f"--passage-vectors {path} holds {d}-d vectors, but the cache of {identity} "
                        f"({cache.dir}) holds {cache.dim}-d ones: name the encoder that made them")
    vecs = l2_normalise(x[[row[str(i)] for i in ids]])  # (n, d) in passage order
    new = 0
    for template in dict.fromkeys(templates):  # each once, in order
        keys = cache_keys(identity, template, [str(t) for t in texts])
        sid, _ = cache.lookup(keys)
        todo = np.flatnonzero(sid < 0)
        _, first = np.unique(keys[todo], return_index=True)
        todo = todo[np.sort(first)]
        if len(todo):
            cache.put(keys[todo], vecs[todo])
            new += len(todo)
    log.info("--passage-vectors: %d passages' vectors of %s from %s (%d new in the cache)", len(ids), identity,
             path, new)
    return new


__all__ = ["PassageVectorsOptions", "read_vectors", "seed_passage_vectors"]
