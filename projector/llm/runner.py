"""Sending jobs to the LLM: the configured endpoint (``Endpoint``: an OpenAI-compatible URL, or the embedded
llama.cpp server started on first use and stopped by its PID) and the loop that sends every job not yet done,
``--concurrency`` at a time, recording each result in ``records.jsonl`` as it arrives (``run_jobs``; with
``--batch`` through the Batch API, ``projector.llm.batch``). A re-run skips what the record log already holds.
"""
from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from projector.cli import option
from projector.errors import LLMError, ProjectorError
from projector.llm.client import ChatClient, Questions, public_url
from projector.llm.records import Job, RecordLog, make_record


@dataclass(kw_only=True)
class EndpointOptions:
    """The LLM endpoint's options, shared by every stage that calls one (generate, teach): where it is, how
    many requests are in flight, how replies are constrained and retried."""

    base_url: str | None = option(None, help="OpenAI-compatible endpoint (key in OPENAI_API_KEY); None: "
                                             "OPENAI_BASE_URL, else the embedded llama.cpp server on 127.0.0.1")
    model: str | None = option(None, help="model name at that endpoint")
    local_model: str | None = option(None, help="embedded server: a known model name (qwen2.5-coder-1.5b-instruct, "
                                                "qwen2.5-coder-0.5b-instruct) or a path to a .gguf file; None: "
                                                "qwen2.5-coder-1.5b-instruct")
    concurrency: int = option(4, help="requests in flight")
    response_format: str = option("auto", choices=("auto", "json_object", "json_object+schema", "json_schema", "none"),
                                  help="how replies are constrained to JSON; auto: json_object+schema on the "
                                       "embedded server (grammar-constrained), json_object elsewhere")
    timeout: float = option(120.0, help="seconds per request")
    max_retries: int = option(6, help="transient faults (429/5xx/time-out/dropped connection) retried per request")
    max_invalid: int = option(3, help="replies re-asked, with the error named, when not valid JSON or off-schema; "
                                      "then the request is recorded as failed and the run goes on")
    backoff: float = option(1.0, help="seconds before the first retry of a transient fault; doubles each time "
                                      "(cap 30 s; a 429's Retry-After is honoured)")
    temperature: float = option(0.7, help="sampling temperature of the LLM")
    max_tokens: int = option(400, help="tokens per reply at most")

    # Not a field: live requests unless a stage declares the --batch options (generate does, as fields that
    # shadow this), so that every config the runner reads answers ``cfg.batch``.
    batch = False


class Endpoint:
    """The configured endpoint, connected on first use: a finished run never starts the embedded server."""

    def __init__(self, cfg, logprobs: bool = False):
        self.cfg = cfg
        self.logprobs = logprobs  # the embedded server keeps every token's logits, so replies can carry log-probs
        self.client, self.endpoint = None, None
        self.server = None  # the embedded LocalServer once started (None for an endpoint we do not run)

    def get(self) -> ChatClient:
        if self.client is not None:
            return self.client
        cfg = self.cfg
        base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL")
        if cfg.batch and not base_url:
            if not (cfg.batch_file_only or cfg.batch_results):  # generate's --batch options
                raise ProjectorError("--batch needs an endpoint with the Batch API (--base-url); the embedded server "
                                     "has none. For an offline runner use --batch --batch-file-only.")
            base_url = "http://127.0.0.1/v1"  # not contacted: the files are written / read locally
        fmt = cfg.response_format
        common = dict(timeout=cfg.timeout, max_retries=cfg.max_retries, max_invalid=cfg.max_invalid,
                      temperature=cfg.temperature, max_tokens=cfg.max_tokens, backoff_base=cfg.backoff)
        if base_url:
            if not cfg.model:
                raise ProjectorError("--model is required with --base-url (the model name at that endpoint).")
            self.client = ChatClient(base_url, cfg.model, os.environ.get("OPENAI_API_KEY"),
                                     response_format="json_object" if fmt == "auto" else fmt, **common)
            self.endpoint = public_url(base_url)
        else:
            from projector.llm.server import LocalServer

            # Requests to our own server must not go through a proxy set for the outside world.
            no_proxy = [h for h in os.environ.get("NO_PROXY", "").split(",") if h]
            os.environ["NO_PROXY"] = ",".join(no_proxy + ["127.0.0.1", "localhost"])
            self.server = LocalServer(cfg.local_model, logits_all=self.logprobs)
            self.server.__enter__()
            self.client = ChatClient(self.server.base_url, self.server.model_name, None,
                                     response_format="json_object+schema" if fmt == "auto" else fmt, **common)
            self.endpoint = f"embedded llama.cpp server ({self.server.model_name})"
        return self.client

    @property
    def watch(self):
        """For the embedded server: a coroutine function that returns, with why, once the server has died on its own
        (``LocalServer.died``, polled twice a second); None for an endpoint we do not run."""
        if self.server is None:
            return None

        async def watch() -> str:
            while (why := self.server.died()) is None:
                await asyncio.sleep(0.5)
            return why
        return watch

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.server is not None:
            self.server.__exit__(*exc)  # stops the server by its PID, also on errors and Ctrl-C


def run_jobs(llm: Endpoint, jobs: list[Job], done: dict, records: RecordLog, cfg, label: str) -> None:
    """Send every job not yet done, `concurrency` at a time; record each result as it arrives."""
    pending = [j for j in jobs if j.key not in done]
    if pending and cfg.batch:
        from projector.llm.batch import run_batch

        run_batch(llm.get(), jobs, done, records, cfg, Path(cfg.out), label)
    elif pending:
        client = llm.get()
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the usual case: no event loop in this thread
            asyncio.run(_run_async(client, pending, done, records, cfg, label, llm.watch))
        else:  # called from a running loop (Jupyter): run ours in a worker thread of its own
            import concurrent.futures

            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, _run_async(client, pending, done, records, cfg, label, llm.watch)).result()


async def _run_async(client, pending, done, records, cfg, label, watch=None):
    """``watch``: a coroutine function that returns once the endpoint is gone for good (the embedded server died),
    with why; every request in flight then stops, recording nothing (a resume asks again), and LLMError says why."""
    from tqdm.auto import tqdm

    sem = asyncio.Semaphore(cfg.concurrency)
    started, tokens, made = time.time(), 0, 0
    gone = asyncio.ensure_future(watch()) if watch is not None else asyncio.get_running_loop().create_future()

    async def one(job):
        async with sem:
            sent = time.monotonic()
            request = asyncio.ensure_future(client.ask_logprobs(job.prompt, job.logprobs, job.validate) if job.logprobs
                                            else client.ask(job.prompt, job.schema, job.validate, job.json_schema))
            await asyncio.wait({request, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not request.done():  # its retries against a closed port would only waste its backoff
                request.cancel()
                raise LLMError(gone.result())
            return job, request.result(), time.monotonic() - sent

    tasks = [asyncio.create_task(one(j)) for j in pending]
    bar = tqdm(total=len(pending), desc=label, unit="req", dynamic_ncols=True)
    try:
        for fut in asyncio.as_completed(tasks):
            job, res, seconds = await fut
            rec = make_record(job, model=client.model, ok=res.ok, result=res.value.model_dump() if res.ok else None,
                              raw=res.raw, attempts=res.attempts, invalid=res.invalid, faults=res.faults,
                              prompt_tokens=res.prompt_tokens, completion_tokens=res.completion_tokens,
                              partial=res.partial, error=res.error, seconds=seconds)
            records.append(rec)  # flushed + fsynced: a kill after this line loses nothing
            done[job.key] = rec
            tokens += res.prompt_tokens + res.completion_tokens
            if res.ok:
                made += len(res.value.questions) if isinstance(res.value, Questions) else 1
            dt = max(time.time() - started, 1e-9)
            bar.set_postfix(pairs_s=f"{made / dt:.2f}", tok_s=f"{tokens / dt:.0f}", refresh=False)
            bar.update(1)
    finally:
        bar.close()
        for t in [*tasks, gone]:
            t.cancel()
        await asyncio.gather(*tasks, gone, return_exceptions=True)
        await client.close()
