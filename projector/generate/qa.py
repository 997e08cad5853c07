"""The qa task's recipe (``generate --task qa``): which prompt asks for the questions, with which style examples,
the one request per passage it sends, and the rows the questions become (``QuestionsTask``, the ``qa`` entry of
``projector.generate.tasks``).

Prompts (``qa_prompt``), packaged in ``projector/prompts``:
  - ``qa.v2`` (the default): a mix of query forms in turn -- a keyword query, a natural question, the
    statement a user would search for -- instead of N similar questions;
  - ``qa-examples.v2`` (with ``--query-examples FILE`` of queries alone): the user's own real queries shown as
    style examples, in place of the list of forms;
  - ``qa-shots.v2`` (with ``--query-examples FILE`` whose rows also hold the passage each query was typed to
    find): few-shot pairs, passage then the user's query, as in Promptagator. A small model copies the form of
    a query it sees beside its passage far better than from a list (measured on debdesc: the 1.5B coder model
    writes "What is Kamailio?" from a list of synopses, "Redis session storage plugin for Catalyst" from pairs);
  - ``qa.v1``: two similar questions, the recipe before issue 11 (``--prompt-version v1``), kept byte-identical
    so that runs made with it resume; or the user's ``--prompt-file`` (``$examples`` where the examples go).
  In the v2 prompts everything every request shares (rules, forms, the examples) comes first and the passage
  last, so llama.cpp's server reuses the evaluated prefix of the previous request (its KV cache holds one
  sequence; a prefix match is evaluated once): the example passages cost their tokens once per server, not
  once per request.

Query examples (``read_query_examples`` -> ``QueryExamples``): a text file, one query a line (blank lines
skipped), or a JSON-lines file (``.jsonl``/``.ndjson``/``.json``) whose objects hold the query in ``query`` or
``text`` (as in ``projector.formats.realqueries``) and, on every row or none, the passage it finds in ``passage``
(shown up to ``MAX_SHOT_CHARS`` characters, cut at a word). 1 to ``MAX_EXAMPLES`` of them (4-8 work best);
bad input is a ``DataError`` naming the file and line. A question that copies an example query is re-asked
(``projector.llm.replies.question_checker``).

    from projector.generate.qa import qa_prompt, read_query_examples
    examples = read_query_examples("my-queries.jsonl")   # QueryExamples(queries, passages or None)
    prompt = qa_prompt(None, "v2", examples)             # qa-shots.v2@<hash> (qa-examples.v2 without passages)
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from projector.formats import pairs as pairs_format
from projector.formats.corpus import read_jsonl, read_lines
from projector.generate import sampling
from projector.errors import DataError, ProjectorError
from projector.llm.client import InvalidReply, Prompt, Questions, load_prompt
from projector.formats.realqueries import query_text
from projector.llm.records import Job, finished
from projector.llm.replies import question_checker

PROMPT_VERSIONS = ("v1", "v2")  # packaged qa prompts; v2 is the default
MAX_EXAMPLES = 16  # more is prompt cost on every request for little more style
MAX_EXAMPLE_CHARS = 300  # a query, not a passage
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
PASSAGE_FIELD = "passage"
MAX_SHOT_CHARS = 600  # of an example's passage: enough to show what a query finds; every request carries it


@dataclass(frozen=True)
class QueryExamples:
    """The user's real queries shown to the LLM, in file order; ``passages``: the passage each was typed to find
    (as shown: whitespace collapsed, cut to ``MAX_SHOT_CHARS``), or None for queries alone."""
    queries: list[str]
    passages: list[str] | None = None

    def fingerprint(self) -> str:
        """Names the examples in a run's settings: other examples are another run (a resume refuses them)."""
        body = "\n".join(self.queries) if self.passages is None else json.dumps([self.queries, self.passages])
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def manifest_fields(self) -> dict:
        """What a pairs folder's manifest records of them."""
        return {"query_examples": self.queries,
                **({"query_example_passages": self.passages} if self.passages is not None else {})}

    @classmethod
    def from_manifest(cls, manifest: dict) -> "QueryExamples | None":
        if not manifest.get("query_examples"):
            return None
        return cls(list(manifest["query_examples"]), manifest.get("query_example_passages"))


def read_query_examples(path) -> QueryExamples:
    """The user's real queries in ``path`` (see the module docstring), whitespace collapsed, in file order, with
    their passages where the rows hold them."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--query-examples {path}: no such file (give a text file with one query a line, or "
                        "JSON lines with a text or query field and optionally the passage it finds).")
    if path.suffix.lower() in JSONL_SUFFIXES:
        found = []
        for where, row in read_jsonl(path, DataError):
            text = query_text(where, row)
            passage = row.get(PASSAGE_FIELD)
            if passage is not None and (not isinstance(passage, str) or not passage.strip()):
                raise DataError(f"{where}: field {PASSAGE_FIELD!r} must be the passage's text, got {passage!r:.60}.")
            found.append((where, text, passage))
    else:
        found = [(f"{path}:{lineno}", line, None) for lineno, line in read_lines(path, DataError)]
    queries, passages = [], []
    for where, text, passage in found:
        text = " ".join(text.split())
        if not text:
            continue
        if len(text) > MAX_EXAMPLE_CHARS:
            raise DataError(f"{where}: an example of {len(text)} characters; give queries as users type them "
                            f"(at most {MAX_EXAMPLE_CHARS} characters), not passages.")
        if passages and (passage is None) != (passages[0] is None):
            raise DataError(f"{where}: {'no' if passage is None else 'a'} {PASSAGE_FIELD!r} field, unlike the first "
                            f"example; give every example its passage or none.")
        queries.append(text)
        passages.append(None if passage is None else _shown(passage))
    if not 1 <= len(queries) <= MAX_EXAMPLES:
        raise DataError(f"{path}: {len(queries)} query examples; give 1 to {MAX_EXAMPLES} (4-8 work best), "
                        "one real query a line.")
    return QueryExamples(queries, None if passages[0] is None else passages)


def _shown(passage: str) -> str:
    """An example's passage as the prompt shows it: one paragraph, at most ``MAX_SHOT_CHARS`` (cut at a word)."""
    text = " ".join(passage.split())
    if len(text) <= MAX_SHOT_CHARS:
        return text
    return text[:MAX_SHOT_CHARS].rsplit(" ", 1)[0] + " …"


def qa_prompt(prompt_file: str | None, version: str, examples: QueryExamples | None) -> Prompt:
    """The task prompt: the user's ``--prompt-file``, else the packaged one of ``version`` (with examples:
    ``qa-examples``, or ``qa-shots`` when they come with their passages); refuses examples that would not reach
    the model."""
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
    name = "qa" if not examples else "qa-examples" if examples.passages is None else "qa-shots"
    return load_prompt(name, version=version)


def render_examples(examples: QueryExamples) -> str:
    """The examples as the prompt shows them: one indented list item each, or with passages one
    passage-then-query pair each."""
    if examples.passages is None:
        return "\n".join(f"  - {e}" for e in examples.queries)
    return "\n\n".join(f'Passage:\n"""\n{p}\n"""\nA user\'s query: {q}'
                        for q, p in zip(examples.queries, examples.passages))


def recheck(validate, questions: list[str]) -> list[str]:
    """The recorded ``questions`` of one request that its job's checks (``validate``, today's) still accept."""
    try:
        return list(validate(Questions(questions=list(questions))).questions)
    except InvalidReply as e:  # fewer usable than asked: the usable ones (a partial record is such a reply)
        return list(e.partial.questions) if e.partial is not None else []


def refused(jobs: list[Job], done: dict) -> list[str]:
    """The keys of ``jobs`` whose ok record has questions and none that today's checks accept."""
    return [j.key for j in jobs if (rec := done.get(j.key)) is not None and rec["status"] == "ok"
            and rec["result"]["questions"] and not recheck(j.validate, rec["result"]["questions"])]


def qa_jobs(chosen, n: int, prompt: Prompt, examples: QueryExamples | None = None) -> list[Job]:
    """One request per chosen passage for ``n`` questions; the reply checked by ``question_checker``."""
    # Servers that enforce a schema (llama.cpp's grammar) then cannot return a wrong count or blank strings.
    schema = {"type": "object", "required": ["questions"], "properties": {"questions": {
        "type": "array", "minItems": n, "maxItems": n, "items": {"type": "string", "minLength": 8}}}}
    shared = {"n": n}
    if "examples" in prompt.placeholders():
        shared["examples"] = render_examples(examples) if examples else ""
    queries = examples.queries if examples else ()
    return [Job(f"qa:{p.passage_id}", {"passage_id": p.passage_id},
                prompt.render(**shared, passage=p.text, title=p.title or "(none)"), Questions,
                question_checker(p.text, n, queries), schema) for p in chosen]


class QuestionsTask:
    """--task qa: --questions-per-passage questions for each passage of the sample (``projector.generate.tasks``)."""

    name, layout, progress, logprobs = "qa", "qa", "questions", False

    def __init__(self, cfg, out):
        self.cfg, self.out = cfg, Path(out)
        self.examples = read_query_examples(cfg.query_examples) if cfg.query_examples else None
        self.prompt = qa_prompt(cfg.prompt_file, cfg.prompt_version, self.examples)
        self.dropped = 0

    def prepare(self, passages, split_of) -> None:
        pass

    def resume_identity(self) -> dict:
        # named only when set, so runs made before --query-examples still resume
        return {"query_examples": self.examples.fingerprint()} if self.examples else {}

    def jobs(self, llm, passages, split_of, done, records) -> list[Job]:
        cfg = self.cfg
        jobs = qa_jobs(self.sample(passages), cfg.questions_per_passage, self.prompt, self.examples)
        # A passage whose recorded questions today's checks refuse, every one, is asked again (a check added
        # since, e.g. the reply form's placeholders): it would have no question otherwise.
        for key in refused(jobs, done):
            del done[key]
        return jobs

    def sample(self, passages):
        """The passages that get questions: all, or --max-passages of them by --sample (both only grow)."""
        cfg = self.cfg
        if cfg.sample == "cover":
            from projector.embed.embedding import embed

            return sampling.cover(passages, cfg.max_passages, cfg.seed, lambda texts: embed(texts, cfg.encoder),
                                  self.out)
        return sampling.uniform(passages, cfg.max_passages, cfg.seed)

    def rows(self, jobs, done, passages, split_of) -> tuple[list[dict], int]:
        """The recorded questions pass today's checks again, so that a check added after a run cleans its folder
        on the next (resumed) run; the questions it drops are counted."""
        by_id = {p.passage_id: p for p in passages}
        ok, failed = finished(jobs, done)
        check = {j.key: j.validate for j in jobs}
        rows, self.dropped = [], 0
        for rec in ok:
            p = by_id[rec["passage_id"]]
            questions = recheck(check[rec["key"]], rec["result"]["questions"])
            self.dropped += len(rec["result"]["questions"]) - len(questions)
            rows += pairs_format.qa_rows(p, questions, split_of[p.passage_id])
        return rows, failed

    def manifest(self, manifest, rows, jobs, done) -> None:
        manifest["counts"]["requested"] = len(jobs) * self.cfg.questions_per_passage
        manifest["counts"]["dropped_by_checks"] = self.dropped
        if self.examples:
            manifest.update(self.examples.manifest_fields())

    def report(self, manifest, rows) -> list[str]:
        lines = []
        if manifest["counts"]["dropped_by_checks"]:
            lines.append(f"  dropped    {manifest['counts']['dropped_by_checks']} recorded questions that today's "
                         "checks refuse")
        if rows:
            lines.append("  e.g.       " + "\n             ".join(r["query"] for r in rows[:3]))
        return lines

    def check(self, manifest, rows) -> None:
        pass
