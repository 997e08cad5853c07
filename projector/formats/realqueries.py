"""Your users' real queries, each with the passages that answer it: the input that tells whether a projection
beats cosine on *your* data, judged by people, rather than on questions the LLM wrote.

    QUERIES.jsonl   one JSON object a line:
                      "query" (or "text")   the query as a user typed it
                      and which passages answer it, by id in the pairs folder's passages.jsonl, one of:
                      "passage_id"          one passage
                      "passage_ids"         a list of passages
                      "doc_id"              every passage of that document (as generate chunked it: a user's
                                            logs name documents, not chunks)

``train --validation-queries`` validates, selects and calibrates on them instead of the folder's validation
split; ``evaluate --queries`` scores every row on them. This module owns the format: ``read_real_queries``
returns ``RealQueries``; bad input is one DataError naming the file, line and field. A query that appears on
several lines is one query whose relevant passages are all of theirs.

    from projector.formats.realqueries import read_real_queries
    real = read_real_queries("my-queries.jsonl", passages)   # passages: projector.formats.pairs.read_passages(...)
    real.queries, real.relevant                             # texts; per query, rows of passages
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from projector.formats.corpus import Passage, read_jsonl
from projector.errors import DataError

QUERY_FIELDS = ("query", "text")  # also read by generate's --query-examples (projector.generate.qa): one query format
ID_FIELDS = ("passage_id", "passage_ids", "doc_id")


@dataclass
class RealQueries:
    source: str                   # the file, as given
    queries: list[str]            # distinct query texts, in file order
    relevant: list[set[int]]      # per query: rows of the passages list that answer it
    positives: list[int]          # per query: one of them (the first named), for losses that need one

    def __len__(self) -> int:
        return len(self.queries)


def query_text(where: str, row: dict) -> str:
    """The query a user typed, from a JSON row's "query" (or "text") field, whitespace collapsed ("" if blank)."""
    field = next((f for f in QUERY_FIELDS if f in row), None)
    if field is None or not isinstance(row[field], str):
        raise DataError(f"{where}: no query text in field {' or '.join(QUERY_FIELDS)} (fields: {sorted(row)}).")
    return " ".join(row[field].split())


def read_real_queries(path, passages: list[Passage]) -> RealQueries:
    """The queries of ``path`` (the module docstring's format) against ``passages``: each id must be one of theirs."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (give JSON lines of real queries, each with 'query' and "
                        f"'passage_id', 'passage_ids' or 'doc_id' of the pairs folder's passages).")
    row_of = {p.passage_id: i for i, p in enumerate(passages)}
    rows_of_doc: dict[str, list[int]] = {}
    for i, p in enumerate(passages):
        rows_of_doc.setdefault(p.doc_id, []).append(i)
    found: dict[str, list[int]] = {}
    for where, row in read_jsonl(path, DataError):
        text = query_text(where, row)
        if not text:
            raise DataError(f"{where}: field {next(f for f in QUERY_FIELDS if f in row)!r} is empty.")
        named = [f for f in ID_FIELDS if f in row]
        if len(named) != 1:
            raise DataError(f"{where}: give exactly one of {', '.join(ID_FIELDS)} (found {named or 'none'}).")
        value = row[named[0]]
        if named[0] == "passage_ids":
            if not isinstance(value, list) or not value:
                raise DataError(f"{where}: 'passage_ids' must be a non-empty list of passage ids, got {value!r:.60}.")
            ids = [str(v) for v in value]
        else:
            ids = [str(value)]
        rows = []
        for pid in ids:
            got = rows_of_doc.get(pid) if named[0] == "doc_id" else [row_of[pid]] if pid in row_of else None
            if not got:
                where_ids = "doc_id of passages.jsonl" if named[0] == "doc_id" else "passage_id of passages.jsonl"
                raise DataError(f"{where}: {named[0]} {pid!r} is no {where_ids} (the pairs folder's corpus); "
                                f"ids look like {next(iter(row_of))!r}.")
            rows += got
        found.setdefault(text, [])
        found[text] += [r for r in rows if r not in found[text]]
    if not found:
        raise DataError(f"{path}: no queries (one JSON object a line).")
    return RealQueries(str(path), list(found), [set(r) for r in found.values()], [r[0] for r in found.values()])
