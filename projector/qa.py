"""The qa task's recipe (``generate --task qa``): which prompt asks for the questions, with which style examples,
and the one request per passage it sends.

Prompts (``qa_prompt``), packaged in ``projector/prompts``:
  - ``qa.v2`` (the default): a mix of query forms in turn -- a keyword query, a natural question, the
    statement a user would search for -- instead of N similar questions;
  - ``qa-examples.v2`` (with ``--query-examples FILE``): the user's own real queries shown as style examples
    (few-shot, as in Promptagator), in place of the list of forms;
  - ``qa.v1``: two similar questions, the recipe before issue 11 (``--prompt-version v1``), kept byte-identical
    so that runs made with it resume; or the user's ``--prompt-file`` (``$examples`` where the examples go).
  In the v2 prompts everything every request shares (rules, forms, the examples) comes first and the passage
  last, so llama.cpp's server reuses the evaluated prefix of the previous request (its KV cache holds one
  sequence; a prefix match is evaluated once).

Query examples (``read_query_examples``): a text file, one query a line (blank lines skipped), or a JSON-lines
file (``.jsonl``/``.ndjson``/``.json``) whose objects hold the query in ``text`` or ``query``. 1 to
``MAX_EXAMPLES`` of them (4-8 work best); bad input is a ``DataError`` naming the file and line. Each is shown
on one line; a question that copies one is re-asked (``projector.replies.question_checker``).

    from projector.qa import qa_prompt, read_query_examples
    examples = read_query_examples("my-queries.txt")
    prompt = qa_prompt(None, "v2", examples)     # qa-examples.v2@<hash>
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from projector.corpus import read_jsonl, read_lines
from projector.errors import DataError, ProjectorError
from projector.llm import Prompt, Questions, load_prompt
from projector.records import Job
from projector.replies import question_checker

PROMPT_VERSIONS = ("v1", "v2")  # packaged qa prompts; v2 is the default
MAX_EXAMPLES = 16  # more is prompt cost on every request for little more style
MAX_EXAMPLE_CHARS = 300  # a query, not a passage
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
QUERY_FIELDS = ("text", "query")


def read_query_examples(path) -> list[str]:
    """The user's real queries in ``path`` (see the module docstring), whitespace collapsed, in file order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--query-examples {path}: no such file (give a text file with one query a line, or "
                        "JSON lines with a text or query field).")
    if path.suffix.lower() in JSONL_SUFFIXES:
        found = []
        for where, row in read_jsonl(path, DataError):
            field = next((f for f in QUERY_FIELDS if f in row), None)
            if field is None or not isinstance(row[field], str):
                raise DataError(f"{where}: no query text in field {' or '.join(QUERY_FIELDS)} (fields: {sorted(row)}).")
            found.append((where, row[field]))
    else:
        found = [(f"{path}:{lineno}", line) for lineno, line in read_lines(path, DataError)]
    examples = []
    for where, text in found:
        text = " ".join(text.split())
        if not text:
            continue
        if len(text) > MAX_EXAMPLE_CHARS:
            raise DataError(f"{where}: an example of {len(text)} characters; give queries as users type them "
                            f"(at most {MAX_EXAMPLE_CHARS} characters), not passages.")
        examples.append(text)
    if not 1 <= len(examples) <= MAX_EXAMPLES:
        raise DataError(f"{path}: {len(examples)} query examples; give 1 to {MAX_EXAMPLES} (4-8 work best), "
                        "one real query a line.")
    return examples


def examples_fingerprint(examples: list[str] | None) -> str | None:
    """Names the examples in a run's settings: other examples are another run (a resume refuses them)."""
    if not examples:
        return None
    return hashlib.sha256("\n".join(examples).encode()).hexdigest()[:16]


def qa_prompt(prompt_file: str | None, version: str, examples: list[str] | None) -> Prompt:
    """The task prompt: the user's ``--prompt-file``, else the packaged one of ``version`` (with examples:
    ``qa-examples``); refuses examples that would not reach the model."""
    if version not in PROMPT_VERSIONS:
        raise ProjectorError(f"--prompt-version {version!r}: use one of {', '.join(PROMPT_VERSIONS)}.")
    if prompt_file is not None:
        prompt = load_prompt("qa", prompt_file)
        if examples and "examples" not in prompt.placeholders():
            raise ProjectorError(f"--query-examples: the prompt file {prompt_file} has no $examples placeholder; "
                                 "add one where the examples go (before the passage).")
        return prompt
    if examples and version == "v1":
        raise ProjectorError("--query-examples needs --prompt-version v2 (the v1 prompt has no place for examples).")
    return load_prompt("qa-examples" if examples else "qa", version=version)


def render_examples(examples: list[str]) -> str:
    """The examples as the prompt shows them: one indented list item each."""
    return "\n".join(f"  - {e}" for e in examples)


def qa_jobs(chosen, n: int, prompt: Prompt, examples: list[str] | None = None) -> list[Job]:
    """One request per chosen passage for ``n`` questions; the reply checked by ``question_checker``."""
    # Servers that enforce a schema (llama.cpp's grammar) then cannot return a wrong count or blank strings.
    schema = {"type": "object", "required": ["questions"], "properties": {"questions": {
        "type": "array", "minItems": n, "maxItems": n, "items": {"type": "string", "minLength": 8}}}}
    shared = {"n": n}
    if "examples" in prompt.placeholders():
        shared["examples"] = render_examples(examples or [])
    return [Job(f"qa:{p.passage_id}", {"passage_id": p.passage_id},
                prompt.render(**shared, passage=p.text, title=p.title or "(none)"), Questions,
                question_checker(p.text, n, examples or ()), schema) for p in chosen]
