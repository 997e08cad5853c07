"""Generation at scale through the OpenAI Batch API (files + batches routes), resumable.

``generate --batch`` writes the pending requests as a Batch API JSONL file (one line per request:
``custom_id`` = the request's key, ``method``, ``url``, ``body`` = the same chat-completions body the live
path sends), uploads it (``files.create(purpose="batch")``), creates the batch, polls it, and collects the
output file into the same ``records.jsonl`` the live path writes. Replies that fail validation, and requests
the batch returned as errors or left out, go into the next round, up to ``--max-invalid`` /
``--max-retries`` times; then they are recorded as failed.

Resuming: the batch in flight is kept in ``<out>/batch/state.json`` (written right after it is created), so
a re-run after a crash or Ctrl-C polls and collects that batch instead of submitting a new one; a result
whose key is already recorded is skipped, so nothing is recorded twice.

Works against any server with those routes: OpenAI itself, or a local test server. For vLLM, whose batch
runner reads the same JSONL offline, run ``generate --batch --batch-file-only`` to write
``<out>/batch/round-0.jsonl``, then ``python -m vllm.entrypoints.openai.run_batch -i round-0.jsonl -o
results.jsonl --model NAME`` and ``generate --batch --batch-results results.jsonl`` to collect.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from projector.formats.corpus import parse_jsonl, read_jsonl
from projector.errors import LLMError, ProjectorError
from projector.files import write_json, write_text
from projector.llm.client import ChatClient, InvalidReply, parse_reply
from projector.llm.records import make_record


def run_batch(client: ChatClient, jobs: list, done: dict, records, cfg, out: Path, label: str) -> None:
    """Send every job not yet in ``done`` through batches; record each result as it is collected."""
    folder = out / "batch"
    folder.mkdir(exist_ok=True)
    state_path = folder / "state.json"
    state = _read_state(state_path)
    by_key = {j.key: j for j in jobs}
    api = client.sync_client()

    if cfg.batch_results:  # results of an offline runner (vLLM run_batch) over a file we wrote
        items = [item for _, item in read_jsonl(cfg.batch_results, error=LLMError)]
        _collect(items, by_key, done, records, client, state)
        write_json(state_path, {**state, "batch_id": None})
        return

    while True:
        if state.get("batch_id"):
            batch = _wait(api, state["batch_id"], cfg.batch_poll, label)
            items = []
            for file_id in (batch.output_file_id, batch.error_file_id):
                if file_id:
                    lines = enumerate(api.files.content(file_id).text.splitlines(), start=1)
                    items += [item for _, item in parse_jsonl(lines, f"batch file {file_id}", LLMError)]
            _collect(items, by_key, done, records, client, state)
            state["batch_id"] = None
            write_json(state_path, state)
        # What is still to do: never answered, answered invalid, or answered with an error.
        pending = []
        for job in jobs:
            if job.key in done:
                continue
            tries = state["tries"].get(job.key, 0)
            if tries >= max(cfg.max_invalid, 1) + cfg.max_retries:
                partial = state.get("partial", {}).get(job.key)
                _record(records, done, job, client, ok=partial is not None, raw=None, value=partial,
                        error=None if partial else state["errors"].get(job.key, "no valid reply"), tries=tries,
                        partial=partial is not None)
                continue
            pending.append(job)
        if not pending:
            return
        round_no = state["round"]
        path = folder / f"round-{round_no}.jsonl"
        lines = [json.dumps({"custom_id": job.key, "method": "POST", "url": "/v1/chat/completions",
                             "body": client.request_body([{"role": "user", "content": job.prompt}], job.schema,
                                                         job.json_schema)}, ensure_ascii=False) + "\n"
                 for job in pending]
        write_text(path, "".join(lines))
        if cfg.batch_file_only:
            print(f"projector.generate: wrote {len(pending)} requests to {path}; run them with your batch runner, "
                  "then collect with --batch --batch-results RESULTS.jsonl")
            return
        with open(path, "rb") as f:
            uploaded = api.files.create(file=(path.name, f), purpose="batch")
        batch = api.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
                                   metadata={"projector_round": str(round_no)})
        for job in pending:
            state["tries"][job.key] = state["tries"].get(job.key, 0) + 1
        state.update(batch_id=batch.id, round=round_no + 1)
        write_json(state_path, state)  # from here on, a re-run resumes this batch instead of paying again


def _wait(api, batch_id: str, poll: float, label: str):
    from tqdm.auto import tqdm

    bar = None
    try:
        while True:
            batch = api.batches.retrieve(batch_id)
            counts = batch.request_counts
            if counts is not None:
                if bar is None:
                    bar = tqdm(total=counts.total or None, desc=f"{label} (batch {batch_id})", unit="req")
                bar.n = (counts.completed or 0) + (counts.failed or 0)
                bar.set_postfix(status=batch.status, refresh=True)
            if batch.status == "completed":
                return batch
            if batch.status in ("failed", "expired", "cancelled"):
                if batch.status == "expired" or batch.output_file_id:
                    return batch  # what was finished is in the output file; the rest goes into the next round
                errors = getattr(batch, "errors", None)
                raise LLMError(f"batch {batch_id} {batch.status}: {errors}. Fix the cause and re-run to submit again "
                               f"(or delete {batch_id} from batch/state.json).")
            time.sleep(poll)
    finally:
        if bar is not None:
            bar.close()


def _collect(items: list[dict], by_key, done, records, client, state) -> None:
    """Record every valid result of ``items`` (Batch API output lines); note the rest for the next round."""
    for item in items:
        key = item.get("custom_id")
        job = by_key.get(key)
        if job is None or key in done:
            continue  # not ours, or already recorded by an earlier collection: never twice
        response = item.get("response") or {}
        if response.get("status_code") != 200 or item.get("error"):
            state["errors"][key] = f"batch error: {item.get('error') or response.get('status_code')}"
            continue
        body = response.get("body") or {}
        raw = ((body.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
        usage = body.get("usage") or {}
        try:
            value = parse_reply(raw, job.schema, job.validate)
        except InvalidReply as e:
            state["errors"][key] = str(e)
            if e.partial is not None:
                state.setdefault("partial", {})[key] = e.partial.model_dump()
            continue
        _record(records, done, job, client, ok=True, raw=raw, value=value.model_dump(), error=None,
                tries=state["tries"].get(key, 1), usage=usage)


def _record(records, done, job, client, ok, raw, value, error, tries, usage=None, partial=False) -> None:
    usage = usage or {}
    rec = make_record(job, model=client.model, ok=ok, result=value, raw=raw, attempts=tries,
                      invalid=max(tries - 1, 0), faults={}, prompt_tokens=usage.get("prompt_tokens", 0),
                      completion_tokens=usage.get("completion_tokens", 0), partial=partial, error=error, via="batch")
    records.append(rec)
    done[job.key] = rec


def _read_state(path: Path) -> dict:
    state = {"round": 0, "batch_id": None, "tries": {}, "errors": {}}
    if path.exists():
        try:
            state.update(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError:
            raise ProjectorError(f"{path}: corrupt batch state; delete it to resubmit what is not yet recorded.") from None
    return state
