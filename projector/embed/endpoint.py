"""The frozen encoder behind an OpenAI-compatible embeddings endpoint: ``--encoder openai:MODEL``.

Any server with ``POST /v1/embeddings`` works: OpenAI (text-embedding-3-*), Azure, vLLM, Ollama, llama.cpp's
server, infinity, TEI, or ``python -m projector.embed.serve`` (a sentence-transformers folder served here).

    from projector.embed.endpoint import configure
    configure("openai:text-embedding-3-small", dimensions=256)     # base URL: OPENAI_BASE_URL, else OpenAI
    x = projector.embed.embed(texts, "openai:text-embedding-3-small")   # (n, 256), through the cache

Design:
  - identity ``openai:MODEL`` (``@DIMS`` with ``--encoder-dimensions``) is what keys the on-disk cache and what
    artifacts record: the model and its dimensions define the vectors; the base URL is recorded (without
    credentials) so ``projector.load`` can reach the same model again; the key never appears anywhere: it is
    read from the environment (``OPENAI_API_KEY`` or ``--encoder-api-key-env``) when a request is sent;
  - texts go out in requests of at most ``request_texts`` texts and ``request_tokens`` estimated tokens
    (4 bytes a token), ``concurrency`` in flight, through the real ``openai`` client (base64 replies);
  - transient faults (429 with Retry-After, 5xx, time-outs, dropped connections) are retried with the LLM
    client's backoff (``projector.llm.client.transient_fault``, ``backoff_delay``); every reply is checked
    (one vector per text, in order, the expected dimension, finite values) and a bad one asked again;
  - each reply is handed to ``on_batch`` as it arrives, so ``embed()`` caches it at once: a run killed
    mid-way re-sends only what was in flight;
  - a wrong key, an unknown model, an unreachable URL: one EncoderError line naming the flag to fix.

Imports only the standard library and numpy at import time (openai loads on first request).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
from dataclasses import dataclass, replace

import numpy as np

from projector.cli import option
from projector.errors import EncoderError

PREFIX = "openai:"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
BYTES_PER_TOKEN = 4  # token estimate for batching by tokens (no tokenizer of the remote model here)


def is_endpoint(encoder) -> bool:
    """True for ``openai:MODEL`` encoders."""
    return isinstance(encoder, str) and encoder.startswith(PREFIX)


@dataclass(frozen=True)
class EndpointSpec:
    """Where the endpoint is and how it is called. ``identity`` keys the cache; ``record()`` goes to artifacts."""

    model: str
    base_url: str
    dimensions: int | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    request_texts: int = 64
    request_tokens: int = 100_000
    timeout: float = 120.0
    max_retries: int = 6
    max_invalid: int = 3
    backoff: float = 1.0

    @property
    def identity(self) -> str:
        return f"{PREFIX}{self.model}" + (f"@{self.dimensions}" if self.dimensions else "")

    def record(self) -> dict:
        from projector.llm.client import public_url

        return {"base_url": public_url(self.base_url), "dimensions": self.dimensions, "api_key_env": self.api_key_env}


_specs: dict[str, EndpointSpec] = {}  # encoder string -> its spec, set by configure() (a stage's flags, an artifact)
_encoders: dict[EndpointSpec, "EndpointEncoder"] = {}


def configure(encoder: str, *, base_url: str | None = None, dimensions: int | None = None,
              api_key_env: str | None = None, **tuning) -> EndpointSpec:
    """Register how ``encoder`` (``openai:MODEL``) is reached for the rest of the process; returns its spec."""
    if not is_endpoint(encoder) or not encoder[len(PREFIX):]:
        raise EncoderError(f"--encoder {encoder!r}: an endpoint encoder is written openai:MODEL")
    if dimensions is not None and dimensions < 1:
        raise EncoderError(f"--encoder-dimensions must be >= 1, got {dimensions}")
    for name in ("concurrency", "request_texts", "request_tokens", "timeout"):
        if name in tuning and tuning[name] is not None and tuning[name] < 1:
            raise EncoderError(f"--encoder-{name.replace('_', '-')} must be >= 1, got {tuning[name]}")
    spec = EndpointSpec(model=encoder[len(PREFIX):],
                        base_url=base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL,
                        dimensions=dimensions, api_key_env=api_key_env or "OPENAI_API_KEY")
    spec = replace(spec, **{k: v for k, v in tuning.items() if v is not None})
    _specs[encoder] = spec
    return spec


def is_configured(encoder: str) -> bool:
    """Whether this process registered how ``encoder`` is reached (a stage's flags, an artifact)."""
    return encoder in _specs


def spec_of(encoder: str) -> EndpointSpec:
    """The registered spec of ``encoder``, else one from the environment's defaults."""
    return _specs.get(encoder) or configure(encoder)


def configure_from_meta(encoder: str, meta: dict, base_url: str | None = None) -> EndpointSpec:
    """Re-create the endpoint a projector.json records (``encoder_endpoint``); ``base_url`` overrides its URL."""
    rec = meta.get("encoder_endpoint") or {}
    return configure(encoder, base_url=base_url or rec.get("base_url"), dimensions=rec.get("dimensions"),
                     api_key_env=rec.get("api_key_env"))


def endpoint_encoder(encoder: str) -> "EndpointEncoder":
    """The encoder object of ``encoder`` (one per spec and process: it remembers the dimension)."""
    spec = spec_of(encoder)
    if spec not in _encoders:
        _encoders[spec] = EndpointEncoder(spec)
    return _encoders[spec]


@dataclass(kw_only=True)
class EncoderOptions:
    """The endpoint encoder's flags, shared by generate, train and evaluate (used with ``--encoder openai:MODEL``)."""

    encoder_base_url: str | None = option(None, help="with --encoder openai:MODEL: the OpenAI-compatible embeddings "
                                                     "endpoint; None: OPENAI_BASE_URL, else api.openai.com")
    encoder_dimensions: int | None = option(None, help="with --encoder openai:MODEL: ask for N-d vectors (models "
                                                       "that support it, e.g. text-embedding-3-*); None: native")
    encoder_api_key_env: str = option("OPENAI_API_KEY", help="environment variable holding the endpoint's key")
    encoder_concurrency: int = option(4, help="embedding requests in flight")
    encoder_request_texts: int = option(64, help="texts per embedding request at most")
    encoder_request_tokens: int = option(100_000, help="estimated tokens (4 bytes each) per embedding request "
                                                       "at most")
    encoder_timeout: float = option(120.0, help="seconds per embedding request (a CPU server busy with the other "
                                                "requests in flight needs more; or lower --encoder-concurrency)")

    def __post_init__(self):
        encoder = getattr(self, "encoder", None)
        if is_endpoint(encoder):
            configure(encoder, base_url=self.encoder_base_url, dimensions=self.encoder_dimensions,
                      api_key_env=self.encoder_api_key_env, concurrency=self.encoder_concurrency,
                      request_texts=self.encoder_request_texts, request_tokens=self.encoder_request_tokens,
                      timeout=self.encoder_timeout)
        elif self.encoder_base_url or self.encoder_dimensions:
            raise EncoderError("--encoder-base-url and --encoder-dimensions need --encoder openai:MODEL")


class InvalidEmbeddings(ValueError):
    """A reply that is not one finite vector of the expected dimension per text, in order."""


def check_reply(data, n: int, dim: int | None) -> np.ndarray:
    """The (n, dim) float32 vectors of a reply's ``data``, or InvalidEmbeddings saying what is wrong."""
    if data is None or len(data) != n:
        raise InvalidEmbeddings(f"{0 if data is None else len(data)} vectors for {n} texts")
    items = sorted(data, key=lambda e: e.index)
    if [e.index for e in items] != list(range(n)):
        raise InvalidEmbeddings("the vectors' indices are not 0..n-1")
    try:
        vecs = np.asarray([e.embedding for e in items], dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise InvalidEmbeddings(f"vectors are not numbers of one length ({str(e)[:80]})") from None
    if vecs.ndim != 2:
        raise InvalidEmbeddings("vectors are not numbers of one length")
    if dim is not None and vecs.shape[1] != dim:
        raise InvalidEmbeddings(f"{vecs.shape[1]}-d vectors, expected {dim}")
    if not np.isfinite(vecs).all():
        raise InvalidEmbeddings("vectors hold NaN/inf")
    return vecs


def request_batches(texts: list[str], max_texts: int, max_tokens: int) -> list[range]:
    """Consecutive index ranges, each at most ``max_texts`` texts and ``max_tokens`` estimated tokens
    (a longer text still goes alone: the endpoint says if it is too long)."""
    out, start, tokens = [], 0, 0
    for i, t in enumerate(texts):
        cost = len(t.encode()) // BYTES_PER_TOKEN + 1
        if i > start and (i - start >= max_texts or tokens + cost > max_tokens):
            out.append(range(start, i))
            start, tokens = i, 0
        tokens += cost
    if start < len(texts):
        out.append(range(start, len(texts)))
    return out


class EndpointEncoder:
    """Texts -> vectors through ``spec``'s endpoint; the interface ``embed()`` uses of a SentenceTransformer."""

    def __init__(self, spec: EndpointSpec):
        self.spec = spec
        self._dim = spec.dimensions
        self._reached = False  # a reply came back: later connection faults are transient, not a wrong URL

    def __repr__(self) -> str:
        return f"EndpointEncoder({self.spec.identity!r}, {self.spec.record()['base_url']!r})"

    def get_sentence_embedding_dimension(self) -> int:
        if self._dim is None:  # native dimension: ask once with one short text
            self.encode(["dimension probe"], show_progress_bar=False)
        return self._dim

    get_embedding_dimension = get_sentence_embedding_dimension

    def encode(self, texts: list[str], batch_size: int | None = None, convert_to_numpy: bool = True,
               show_progress_bar: bool = False, on_batch=None, **_) -> np.ndarray:
        """(n, d) float32 vectors in text order. ``on_batch(indices, vectors)`` is called as each reply arrives
        (``embed()`` caches it; ``indices``: the texts' positions, an int array); an error leaves the replies
        already handed over intact.

        Texts are sent longest first, so each request holds texts of similar length: a server that pads a
        request to its longest text (ours, and any that encodes one request as one batch) wastes little, as
        sentence-transformers' own length sort does in-process (measured: benchmarks/endpoint_encoder.py)."""
        texts = [str(t) for t in texts]
        order = np.argsort([-len(t.encode()) for t in texts], kind="stable")  # positions, longest text first
        out = np.empty((len(texts), self._dim or 0), dtype=np.float32) if self._dim else None

        def take(rng: range, vecs: np.ndarray):
            nonlocal out
            if out is None:
                out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
            idx = order[rng.start:rng.stop]
            out[idx] = vecs
            if on_batch is not None:
                on_batch(idx, vecs)

        coro = self._run([texts[i] for i in order], take, show_progress_bar)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(coro)
        else:  # called from async code (LlamaIndex, a notebook): run the requests on a thread of their own
            with concurrent.futures.ThreadPoolExecutor(1) as ex:
                ex.submit(asyncio.run, coro).result()
        return out if out is not None else np.zeros((0, self._dim or 0), dtype=np.float32)

    async def _run(self, texts: list[str], take, show: bool) -> None:
        import openai
        from tqdm import tqdm

        spec = self.spec
        key = os.environ.get(spec.api_key_env)
        client = openai.AsyncOpenAI(base_url=spec.base_url, api_key=key or "not-needed", timeout=spec.timeout,
                                    max_retries=0)  # retries are ours: counted, with Retry-After
        gate = asyncio.Semaphore(spec.concurrency)
        batches = request_batches(texts, spec.request_texts, spec.request_tokens)
        bar = tqdm(total=len(texts), unit="text", dynamic_ncols=True, desc=f"embedding ({spec.identity})",
                   disable=None if show and len(texts) > 1 else True)
        tokens = 0

        failed = False  # after a permanent error, requests waiting for the gate are not sent

        async def one(rng: range):
            nonlocal tokens, failed
            async with gate:
                if failed:
                    return
                try:
                    vecs, used = await self._request(client, [texts[i] for i in rng], key)
                except BaseException:
                    failed = True
                    raise
            take(rng, vecs)
            tokens += used
            bar.update(len(rng))
            bar.set_postfix({"tokens": tokens}, refresh=False)

        tasks = [asyncio.ensure_future(one(rng)) for rng in batches]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            bar.close()
            await client.close()

    async def _request(self, client, batch: list[str], key: str | None) -> tuple[np.ndarray, int]:
        """One request's (vectors, tokens used), retrying transient faults and invalid replies."""
        import openai

        from projector.llm.client import backoff_delay

        spec, faults, invalid = self.spec, {}, []
        extra = {"dimensions": spec.dimensions} if spec.dimensions else {}
        attempt = 0
        while True:
            try:
                resp = await client.embeddings.create(model=spec.model, input=batch, **extra)
                vecs = check_reply(getattr(resp, "data", None), len(batch), self._dim)
            except InvalidEmbeddings as e:
                invalid.append(str(e))
                if len(invalid) >= spec.max_invalid:
                    raise EncoderError(self._where() + f": {len(invalid)} replies in a row were invalid "
                                       f"({invalid[-1]}); check that the endpoint serves embeddings of {spec.model}"
                                       + (f" at {spec.dimensions} dimensions (--encoder-dimensions)"
                                          if spec.dimensions else "")) from None
                kind, retry_after = "invalid", None
            except (openai.APIStatusError, openai.APIConnectionError, openai.APIResponseValidationError,
                    ValueError) as e:
                kind, retry_after = self._fault(e, key)
            else:
                self._reached = True
                if self._dim is None:
                    self._dim = vecs.shape[1]
                usage = getattr(resp, "usage", None)
                used = getattr(usage, "prompt_tokens", None) or sum(len(t.encode()) // BYTES_PER_TOKEN + 1 for t in batch)
                return vecs, int(used)
            faults[kind] = faults.get(kind, 0) + 1
            if kind != "invalid":
                attempt += 1
                if attempt > spec.max_retries:
                    raise EncoderError(self._where() + f": still failing after {attempt} tries ("
                                       + ", ".join(f"{k}×{v}" for k, v in faults.items()) + "); re-run the same "
                                       "command later: what was embedded is cached") from None
            await asyncio.sleep(backoff_delay(max(attempt - 1, 0), spec.backoff, retry_after))

    def _fault(self, e: Exception, key: str | None) -> tuple[str, float | None]:
        """(kind, retry-after) of a transient fault; an EncoderError naming the fix for a permanent one."""
        import openai

        from projector.llm.client import transient_fault

        spec = self.spec
        fault = transient_fault(e)
        if isinstance(e, openai.APIConnectionError) and not isinstance(e, openai.APITimeoutError) and not self._reached:
            if getattr(self, "_unreached_tries", 0) >= 1:  # never answered: most likely a wrong URL, say so soon
                raise EncoderError(f"cannot reach the embeddings endpoint {spec.record()['base_url']}: check "
                                   "--encoder-base-url (or OPENAI_BASE_URL) and that the server is running") from None
            self._unreached_tries = getattr(self, "_unreached_tries", 0) + 1
        if fault is not None:
            return fault
        if isinstance(e, (openai.APIResponseValidationError, ValueError)):
            return "garbage", None  # not JSON / not an embeddings reply: asked again, bounded by max_retries
        status = getattr(e, "status_code", None)
        if status in (401, 403):
            raise EncoderError(self._where() + f" answered {status}: the key was refused; set "
                               f"{spec.api_key_env} to a valid key (or name another variable with "
                               "--encoder-api-key-env)") from None
        if status == 404:
            raise EncoderError(self._where() + f" answered 404: it does not serve model {spec.model!r} at "
                               f"/embeddings; check --encoder openai:MODEL and --encoder-base-url") from None
        message = _scrub(getattr(e, "message", None) or str(e), key)
        raise EncoderError(self._where() + f" answered {status}: {message[:200]}; check --encoder "
                           "openai:MODEL" + (" and --encoder-dimensions" if spec.dimensions else "")) from None

    def _where(self) -> str:
        return f"embeddings endpoint {self.spec.record()['base_url']} (model {self.spec.model})"


def _scrub(text: str, key: str | None) -> str:
    """``text`` without the key (some servers quote what they were sent)."""
    text = " ".join(str(text).split())
    return text.replace(key, "***") if key else text


__all__ = ["PREFIX", "EncoderOptions", "EndpointEncoder", "EndpointSpec", "check_reply", "configure",
           "configure_from_meta", "endpoint_encoder", "is_configured", "is_endpoint", "request_batches", "spec_of"]
