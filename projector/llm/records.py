"""records.jsonl: the append-only log of every LLM request ``projector.generate`` makes, live or by batch.

A request is a ``Job`` (its key, the ids recorded with it, the prompt and how its reply is checked); one
JSON object per finished request (``make_record`` builds it, for both paths)::

    {"key": "qa:doc#0", <the job's ids>, "status": "ok" | "failed", "result": <parsed reply> | null,
     "raw": <reply text>, "attempts": 1, "invalid": 0, "faults": {"429": 1, ...},
     "usage": {"prompt_tokens": .., "completion_tokens": ..}, "partial": false, "error": null,
     "model": "...", "time": 1700000000.0[, "seconds": 4.2][, "via": "batch"]}

``time`` is when the request finished; ``seconds`` (live requests) how long it took from being sent to the
last reply, re-asks included (with --concurrency above what the server decodes at once, that includes
waiting at the server).

The last record of a key wins. The log is the only source of truth of a run: the dataset is rebuilt from
it, and a re-run resumes from it after a crash or Ctrl-C (a line cut short by a kill is dropped). A request
that failed without any reply (``unanswered``: the endpoint was down, its transient faults ran out) is asked
again by the next run: that was the server's failure, not the LLM's answer. One the LLM answered badly stays
failed unless the run asks ``retry_failed``.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from projector.errors import DataError
from projector.files import naming


def unanswered(rec: dict) -> bool:
    """A failed request that never got a reply: the endpoint's failure (connection, time-outs, 5xx ran out)."""
    return rec["status"] == "failed" and rec.get("raw") is None and bool(rec.get("faults"))


@dataclass
class Job:
    """One LLM request of a run."""

    key: str  # unique and stable across runs: what "done" means in records.jsonl
    meta: dict  # ids recorded with the result
    prompt: str
    schema: type  # the pydantic model of the reply
    validate: object  # callable(value) -> value, raising projector.llm.client.InvalidReply
    json_schema: dict | None = None  # a tighter schema for the server to enforce (default: the pydantic one)
    logprobs: int | None = None  # ask for one token's top log-probabilities instead (this many; ``validate`` reads them)


def make_record(job: Job, *, model: str, ok: bool, result: dict | None, raw: str | None, attempts: int, invalid: int,
                faults: dict, prompt_tokens: int, completion_tokens: int, partial: bool, error: str | None,
                via: str | None = None, seconds: float | None = None) -> dict:
    """The record of one finished request for ``job`` (its ``key`` and ``meta`` ids)."""
    rec = {"key": job.key, **job.meta, "status": "ok" if ok else "failed", "result": result, "raw": raw,
           "attempts": attempts, "invalid": invalid, "faults": faults,
           "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
           "partial": partial, "error": error, "model": model, "time": round(time.time(), 3)}
    if seconds is not None:
        rec["seconds"] = round(seconds, 3)
    if via:
        rec["via"] = via
    return rec


def finished(jobs: list[Job], done: dict) -> tuple[list[dict], int]:
    """The ok records of ``jobs`` in job order (the record log is the only source of truth for dataset rows),
    and how many of them failed for good."""
    ok, failed = [], 0
    for job in jobs:
        rec = done.get(job.key)
        if rec is not None and rec["status"] == "ok":
            ok.append(rec)
        else:
            failed += rec is not None
    return ok, failed


class RecordLog:
    """Append-only JSONL of LLM results. One line per finished request; the last record of a key wins.

    A line cut short by a crash (no trailing newline / bad JSON at the end) is removed before appending.
    """

    def __init__(self, path: Path):
        self.path = path

    def load(self, retry_failed: bool = False) -> dict:
        """key -> its last record; failed ones without a reply, and with ``retry_failed`` every failed one, are
        left out (asked again)."""
        done: dict = {}
        if not self.path.exists():
            return done
        data = self.path.read_bytes()
        good_end = 0
        for lineno, line in enumerate(data.splitlines(keepends=True), start=1):
            try:
                rec = json.loads(line)
                if not line.endswith(b"\n") or not isinstance(rec, dict) or "key" not in rec:
                    raise ValueError
            except ValueError:
                if good_end + len(line) == len(data):  # the torn last line of a killed run
                    break
                raise DataError(f"{self.path}:{lineno}: corrupt record; remove that line to resume "
                                "(its request will be sent again).") from None
            good_end += len(line)
            if rec["status"] == "failed" and (retry_failed or unanswered(rec)):
                done.pop(rec["key"], None)
            else:
                done[rec["key"]] = rec
        if good_end < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
        return done

    def append(self, rec: dict) -> None:
        """Write one record, flushed and fsynced: a kill after this returns loses nothing."""
        with naming(self.path), open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
