"""Talk to any OpenAI-compatible chat endpoint and get schema-valid JSON back, or a recorded failure.

Design (after instructor and simonw/llm):
  - every call goes through the ``openai`` async client; the whole prompt is one user message (small local
    models and llama.cpp's server follow it best there);
  - transient faults (429 with Retry-After, 5xx, time-outs, dropped connections) are retried with
    exponential backoff and jitter, a bounded number of times;
  - the reply is parsed into a pydantic model; a reply that is not JSON, or off-schema, or fails the
    task's own checks (``validate``), is re-asked with the error appended, a bounded number of times;
  - what happened (attempts, faults, usage, the last raw reply) is returned in a ``CallResult`` so the
    caller can record it append-only. The API key is never logged, printed or returned.
"""
from __future__ import annotations

import asyncio
import json
import math
import random
import re
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import hashlib

from pydantic import BaseModel, ValidationError

from projector.errors import LLMError, ProjectorError

# ----------------------------------------------------------------------------------------------- prompts


@dataclass
class Prompt:
    name: str  # "qa" | "pairs" | "rewrite"
    template: string.Template
    version: str  # file stem + content hash: an edited prompt gets a new version

    def placeholders(self) -> set[str]:
        """The ``$name`` placeholders the template uses."""
        found = set()
        for m in self.template.pattern.finditer(self.template.template):
            found.add(m.group("named") or m.group("braced"))
        return found - {None}

    def render(self, **values) -> str:
        try:
            return self.template.substitute(**values)
        except (KeyError, ValueError) as e:
            raise ProjectorError(f"prompt {self.version}: placeholder {e} cannot be filled; "
                                 f"the {self.name} prompt may use {sorted(values)} as $name.") from None


def load_prompt(name: str, path=None, version: str = "v1") -> Prompt:
    """The packaged prompt ``prompts/<name>.<version>.txt``, or a user's file given with --prompt-file."""
    if path is None:
        packaged = resources.files("projector").joinpath(f"prompts/{name}.{version}.txt")
        if not packaged.is_file():
            raise ProjectorError(f"no packaged prompt {name}.{version} (prompts/{name}.{version}.txt).")
        text = packaged.read_text(encoding="utf-8")
        stem = f"{name}.{version}"
    else:
        p = Path(path)
        if not p.is_file():
            raise ProjectorError(f"{p}: prompt file not found.")
        text = p.read_text(encoding="utf-8")
        stem = p.stem
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return Prompt(name=name, template=string.Template(text), version=f"{stem}@{digest}")


# ------------------------------------------------------------------------------------------------ schemas


class Questions(BaseModel):
    questions: list[str]


class Judgement(BaseModel):
    reason: str = ""
    similar: bool


class Rewrite(BaseModel):
    text: str


class Relevance(BaseModel):
    """A teacher's grade of how well a passage answers a query (``projector.teach``): 0 not at all .. 3 fully."""
    score: int


# ---------------------------------------------------------------------------------------------- the call


class InvalidReply(ValueError):
    """The reply parsed but fails the task's own checks (preamble, copy of the passage, wrong count).

    ``partial``: the usable part of the reply, kept if no later attempt does better.
    """

    def __init__(self, message: str, partial: BaseModel | None = None):
        super().__init__(message)
        self.partial = partial


@dataclass
class CallResult:
    ok: bool
    value: BaseModel | None = None
    raw: str | None = None  # the last reply text
    attempts: int = 0  # requests sent
    invalid: int = 0  # replies rejected (not JSON, off-schema, failed checks)
    faults: dict = field(default_factory=dict)  # transient fault kind -> count
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    partial: bool = False  # ok, but with less than asked (the usable part of the best reply)


def public_url(url: str | None) -> str | None:
    """The endpoint as safe to record: no user:password, no query string (keys sometimes ride there)."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def extract_json(text: str) -> dict:
    """The first JSON object in a reply, tolerating code fences and chatter around it."""
    text = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fenced:
        text = fenced.group(1).strip()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            raise InvalidReply("the reply is not JSON") from None
        try:
            obj = json.loads(text[start:end + 1])
        except json.JSONDecodeError as e:
            raise InvalidReply(f"the reply is not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise InvalidReply("the reply must be a JSON object")
    return obj


class ChatClient:
    """One endpoint + model; ``await client.ask(prompt, Schema, validate)`` -> CallResult."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout: float = 120.0,
                 max_retries: int = 6, max_invalid: int = 3, temperature: float = 0.7, max_tokens: int = 400,
                 response_format: str = "json_object", backoff_base: float = 1.0, backoff_max: float = 30.0):
        if response_format not in ("json_object", "json_object+schema", "json_schema", "none"):
            raise ProjectorError(f"response format {response_format!r}: use json_object, json_object+schema, "
                                 "json_schema or none.")
        self.base_url, self.model = base_url, model
        self.max_retries, self.max_invalid = max_retries, max_invalid
        self.temperature, self.max_tokens = temperature, max_tokens
        self.response_format = response_format
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self._api_key, self._timeout = api_key or "not-needed", timeout
        self._client = None  # made inside the running event loop (one per asyncio.run)

    @property
    def client(self):
        import openai

        if self._client is None:
            # Retries are ours (counted, recorded), so the client's own are off.
            self._client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key,
                                              timeout=self._timeout, max_retries=0)
        return self._client

    def sync_client(self):
        """A blocking client for the same endpoint (the Batch API's files and batches routes)."""
        import openai

        return openai.OpenAI(base_url=self.base_url, api_key=self._api_key, timeout=self._timeout,
                             max_retries=self.max_retries)

    async def close(self):
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _format(self, schema: type[BaseModel], json_schema: dict | None):
        json_schema = json_schema or schema.model_json_schema()
        if self.response_format == "none":
            return None
        if self.response_format == "json_object":
            return {"type": "json_object"}
        if self.response_format == "json_object+schema":  # llama.cpp: grammar-constrained to the schema
            return {"type": "json_object", "schema": json_schema}
        return {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": json_schema}}

    def request_body(self, messages, schema, json_schema: dict | None = None) -> dict:
        """The chat-completions request body: used live, and written as is into Batch API files."""
        body = dict(model=self.model, messages=messages, temperature=self.temperature, max_tokens=self.max_tokens)
        fmt = self._format(schema, json_schema)
        if fmt is not None:
            body["response_format"] = fmt
        return body

    async def _send(self, messages, schema, result: CallResult, json_schema: dict | None = None) -> str:
        """One reply text, retrying transient faults with backoff; raises LLMError when they persist."""
        choice = await self._send_body(self.request_body(messages, schema, json_schema), result)
        return choice.message.content or ""

    async def _send_body(self, kwargs: dict, result: CallResult):
        """The first choice of the reply to request body ``kwargs``, retrying transient faults with backoff;
        raises LLMError when they persist."""
        import openai

        for attempt in range(self.max_retries + 1):
            result.attempts += 1
            retry_after = None
            try:
                resp = await self.client.chat.completions.create(**kwargs)
                if resp.usage is not None:
                    result.prompt_tokens += resp.usage.prompt_tokens or 0
                    result.completion_tokens += resp.usage.completion_tokens or 0
                if not resp.choices:
                    raise InvalidReply("the reply has no choices")
                return resp.choices[0]
            except (openai.APIStatusError, openai.APIConnectionError) as e:
                fault = transient_fault(e)
                if fault is None:
                    # 4xx other than these will not get better by asking again: a setting is wrong.
                    raise LLMError(f"{public_url(self.base_url)} answered {e.status_code}: {_short(e)}; "
                                   "check --model, --base-url and the key in OPENAI_API_KEY.") from None
                kind, retry_after = fault
            result.faults[kind] = result.faults.get(kind, 0) + 1
            if attempt == self.max_retries:
                break
            await asyncio.sleep(backoff_delay(attempt, self.backoff_base, retry_after, self.backoff_max))
        raise LLMError(f"{public_url(self.base_url)}: still failing after {self.max_retries + 1} tries "
                       f"({', '.join(f'{k}×{v}' for k, v in result.faults.items())}).")

    async def ask(self, prompt: str, schema: type[BaseModel],
                  validate: Callable[[BaseModel], BaseModel] | None = None,
                  json_schema: dict | None = None) -> CallResult:
        """Ask until a reply passes schema + ``validate`` (re-asking with the error), or give up and say why."""
        result = CallResult(ok=False)
        best_partial = None
        messages = [{"role": "user", "content": prompt}]
        for _ in range(self.max_invalid):
            try:
                raw = await self._send(messages, schema, result, json_schema)
            except LLMError as e:
                result.error = str(e)
                return result
            except InvalidReply as e:
                result.invalid += 1
                result.error = str(e)
                continue
            result.raw = raw
            try:
                value = parse_reply(raw, schema, validate)
            except InvalidReply as e:
                result.invalid += 1
                result.error = str(e)
                if getattr(e, "partial", None) is not None:
                    best_partial = e.partial  # later attempts are at least as good: they saw the error
                # Re-ask with the mistake named (instructor-style), keeping the conversation short.
                messages = [messages[0], {"role": "assistant", "content": raw[:2000]},
                            {"role": "user", "content": f"That answer was rejected: {result.error}. "
                                                        "Answer again with JSON only, in the form asked."}]
                continue
            result.ok, result.value, result.error = True, value, None
            return result
        if best_partial is not None:
            result.ok, result.value, result.partial = True, best_partial, True
        return result


    def logprobs_body(self, prompt: str, top_logprobs: int) -> dict:
        """One token, its top log-probabilities, no JSON constraint (a grammar would force '{' first)."""
        return dict(model=self.model, messages=[{"role": "user", "content": prompt}], temperature=0.0, max_tokens=1,
                    logprobs=True, top_logprobs=top_logprobs)

    async def ask_logprobs(self, prompt: str, top_logprobs: int,
                           validate: Callable[[BaseModel], BaseModel] | None = None) -> CallResult:
        """The first reply token's top log-probabilities (``projector.llm.options.TopLogprobs``), passed through
        ``validate``; one evaluation, never re-asked (the same prompt gives the same distribution). ``raw`` keeps
        what the endpoint said (the token and its top log-probabilities) for the record."""
        from projector.llm.options import TopLogprobs

        result = CallResult(ok=False)
        try:
            choice = await self._send_body(self.logprobs_body(prompt, top_logprobs), result)
        except (LLMError, InvalidReply) as e:
            result.error = str(e)
            return result
        content = (getattr(choice.logprobs, "content", None) or [None])[0] if choice.logprobs else None
        top = {}
        for t in (getattr(content, "top_logprobs", None) or []):
            top[t.token] = max(top.get(t.token, -math.inf), t.logprob)
        result.raw = json.dumps({"content": choice.message.content, "top_logprobs": top}, ensure_ascii=False)
        if not top:
            result.invalid, result.error = 1, "the reply has no top_logprobs (the endpoint does not return them)"
            return result
        try:
            value = TopLogprobs(token=content.token, top_logprobs=top)
            result.value = validate(value) if validate is not None else value
        except InvalidReply as e:
            result.invalid, result.error = 1, str(e)
            return result
        result.ok = True
        return result


def parse_reply(raw: str, schema: type[BaseModel], validate=None) -> BaseModel:
    """Reply text -> validated value; every way it can be wrong is an InvalidReply that says how."""
    try:
        value = schema.model_validate(extract_json(raw))
    except ValidationError as e:
        raise InvalidReply(_describe(e)) from None
    return validate(value) if validate is not None else value


def transient_fault(e: Exception) -> tuple[str, float | None] | None:
    """(kind, Retry-After seconds or None) of a fault worth retrying: 429, 5xx, 408/409, a time-out, a dropped
    connection; None for one asking again will not cure (another 4xx). Shared with the embeddings endpoint."""
    import openai

    if isinstance(e, openai.RateLimitError):
        return "429", _retry_after(e)
    if isinstance(e, openai.APITimeoutError):
        return "timeout", None
    if isinstance(e, openai.APIConnectionError):
        return "connection", None
    if isinstance(e, openai.APIStatusError) and (e.status_code >= 500 or e.status_code in (408, 409)):
        return str(e.status_code), _retry_after(e)
    return None


def backoff_delay(attempt: int, base: float, retry_after: float | None = None, cap: float = 30.0) -> float:
    """Seconds before retry ``attempt`` (0-based): exponential with jitter, at least a Retry-After (capped)."""
    delay = min(cap, base * 2 ** attempt) * (0.5 + random.random() / 2)
    return max(delay, min(retry_after or 0, cap))


def _retry_after(e) -> float | None:
    try:
        value = e.response.headers.get("retry-after")
        return float(value) if value is not None else None
    except (AttributeError, ValueError):
        return None


def _short(e) -> str:
    msg = getattr(e, "message", None) or str(e)
    return msg[:200]


def _describe(e: Exception) -> str:
    if isinstance(e, ValidationError):
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first.get("loc", ())) or "reply"
        return f"field {loc}: {first.get('msg')}"
    return str(e)
