"""Generation throughput per recipe (issue 11 piece 4): pairs and tokens per LLM second, from finished runs.

Reads each run folder of ``projector.generate`` (manifest.json, records.jsonl with per-request ``seconds``,
passages.jsonl) and writes a table as ``OUT.md`` + ``OUT.json``; a ``## Findings ...`` section written by hand in
an existing OUT.md is kept. The runs themselves are made with the CLI
(the commands are in ``COMMANDS`` and in the .md); nothing here talks to an LLM.

    python benchmarks/generation_throughput.py runs/throughput/v1-q2 runs/throughput/v2-q4 runs/throughput/v2-q6 \
        --out benchmarks/results/generation-throughput

Per run: requests, LLM calls (re-asks included), pairs, LLM seconds (the sum of the requests' ``seconds``;
at --concurrency 1 the server's busy time), pairs/s, prompt and completion tokens/s (as the server reports
them: the whole prompt, prefix reuse or not), and the prompt tokens a request shares with the one before
(counted with the model's own tokenizer, vocabulary only): what llama.cpp's prefix reuse does not evaluate
again. Question form shares (keyword query: no "?" and at most 6 words; question: ends in "?"; statement:
the rest) and a few examples show what was made.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from projector.files import write_json, write_text  # noqa: E402
from projector.formats.pairs import read_passages  # noqa: E402
from projector.generate.qa import QueryExamples, qa_jobs, qa_prompt  # noqa: E402

COMMANDS = """\
# one request at a time on one thread; the machine (2 cores) was shared with other jobs and, for the rows of the
# last pass, with two other embedded-LLM runs: rows are comparable within a pass, which is why v1 ran again
export PROJECTOR_LLM_THREADS=1
run() {  # prompt version, questions per passage, passages, run name
  nice -n 5 python -m projector.generate --corpus data/python-reference.jsonl --id-field id \\
    --out runs/throughput/$4 --max-passages $3 --prompt-version $1 --questions-per-passage $2 \\
    --concurrency 1 --timeout 600
}
run v2 4 5 v2-q4; run v1 2 5 v1-q2-control; run v2 6 5 v2-q6     # the last pass (qa.v2 of commit 4014358)
run v1 2 10 v1-q2                                               # the first pass, alone with the LLM
# earlier qa.v2 texts, since revised (run at those commits): run v2 4 10 old-v2-q4 (113a02e),
# run v2 4 5 old2-v2-q4 (5ef573c)
python benchmarks/generation_throughput.py runs/throughput/{v1-q2-control,v2-q4,v2-q6,v1-q2,old-v2-q4,old2-v2-q4} \\
    --out benchmarks/results/generation-throughput"""


def form(q: str) -> str:
    if q.rstrip().endswith("?"):
        return "question"
    return "keyword" if len(q.split()) <= 6 else "statement"


def prompts_of(run: Path, manifest: dict, records: list[dict]) -> list[str]:
    """The prompts the run sent, in the order sent, rebuilt from its passages and prompt version."""
    version = manifest["prompt_version"].split("@")[0].split(".")[-1]  # "qa.v2@..." -> "v2"
    examples = QueryExamples.from_manifest(manifest)
    prompt = qa_prompt(None, version, examples)
    if prompt.version != manifest["prompt_version"]:  # a --prompt-file run, or an edited prompt
        return []
    passages = {p.passage_id: p for p in read_passages(run / "passages.jsonl")}
    jobs = qa_jobs([passages[r["passage_id"]] for r in records], manifest["settings"]["questions_per_passage"],
                   prompt, examples)
    return [j.prompt for j in jobs]


def shared_prefix_tokens(prompts: list[str], tokenize) -> tuple[float, float]:
    """Mean tokens per prompt, mean tokens shared with the previous prompt (llama.cpp keeps one sequence)."""
    toks = [tokenize(p) for p in prompts]
    shared = [len(os.path.commonprefix([a, b])) for a, b in zip(toks, toks[1:])]
    return sum(map(len, toks)) / len(toks), sum(shared) / max(len(shared), 1)


def measure(run: Path, tokenize) -> dict:
    manifest = json.loads((run / "manifest.json").read_text())
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines() if line.strip()]
    ok = [r for r in records if r["status"] == "ok"]
    seconds = sum(r["seconds"] for r in records)
    queries = [q for r in ok for q in r["result"]["questions"]]
    prompt_tokens = sum(r["usage"]["prompt_tokens"] for r in records)
    completion_tokens = sum(r["usage"]["completion_tokens"] for r in records)
    forms = {f: sum(form(q) == f for q in queries) / max(len(queries), 1) for f in ("keyword", "question", "statement")}
    row = {
        "run": str(run), "prompt_version": manifest["prompt_version"],
        "questions_per_passage": manifest["settings"]["questions_per_passage"],
        "requests": len(records), "llm_calls": sum(r["attempts"] for r in records),
        "invalid_replies": sum(r["invalid"] for r in records), "failed": len(records) - len(ok),
        "partial": sum(bool(r.get("partial")) for r in records), "pairs": len(queries),
        "llm_seconds": round(seconds, 1), "wall_seconds": manifest["wall_seconds"],
        "seconds_per_request": round(seconds / len(records), 2),
        "pairs_per_s": round(len(queries) / seconds, 3),
        "prompt_tokens_per_s": round(prompt_tokens / seconds, 1),
        "completion_tokens_per_s": round(completion_tokens / seconds, 2),
        "prompt_tokens_per_request": round(prompt_tokens / len(records), 1),
        "completion_tokens_per_request": round(completion_tokens / len(records), 1),
        "completion_tokens_per_pair": round(completion_tokens / max(len(queries), 1), 1),
        "forms": {k: round(v, 2) for k, v in forms.items()},
        "words_per_query": round(sum(len(q.split()) for q in queries) / max(len(queries), 1), 1),
        "examples": queries[:8],
    }
    sent = prompts_of(run, manifest, records) if tokenize is not None else []
    if sent:
        mean, shared = shared_prefix_tokens(sent, tokenize)
        row["user_prompt_tokens"], row["shared_with_previous_tokens"] = round(mean, 1), round(shared, 1)
    return row


def model_tokenizer():
    """The embedded model's tokenizer (vocabulary only: no weights are loaded, nothing is decoded)."""
    try:
        from llama_cpp import Llama

        from projector.llm.models import resolve_model
    except ImportError:
        return None
    llm = Llama(str(resolve_model(None)), vocab_only=True, verbose=False)
    return lambda text: llm.tokenize(text.encode(), add_bos=False, special=False)


def to_markdown(rows: list[dict]) -> str:
    base = rows[0]
    lines = [
        "# Generation throughput per recipe (issue 11, piece 4)",
        "",
        "Embedded LLM (qwen2.5-coder-1.5b-instruct, Q4_K_M, llama-cpp-python server), one thread "
        "(`PROJECTOR_LLM_THREADS=1`), one request at a time, passages of `data/python-reference.jsonl` (the "
        "seeded sample's first N: every row with the same N asks about the same passages). LLM seconds: the sum "
        "of the requests' `seconds` in records.jsonl (send to validated reply, re-asks included). Tokens as the "
        "server reports them (the whole prompt, re-asks included); *shared with previous*: the prompt tokens a "
        "request has in common with the one before, which llama.cpp's prefix reuse does not evaluate again. "
        f"*vs base*: pairs/s over the first row's ({base['run']}).",
        "",
        "| run | prompt | q/passage | passages | LLM calls | invalid re-asked | pairs | s/request | pairs/s | vs base "
        "| prompt tok/s | completion tok/s | prompt tok/request | shared with previous | completion tok/pair |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {Path(r['run']).name} | {r['prompt_version']} | {r['questions_per_passage']} | {r['requests']} | "
            f"{r['llm_calls']} | "
            f"{r['invalid_replies']} | {r['pairs']} | {r['seconds_per_request']} | {r['pairs_per_s']} | "
            f"{r['pairs_per_s'] / base['pairs_per_s']:.2f}x | {r['prompt_tokens_per_s']} | "
            f"{r['completion_tokens_per_s']} | {r['prompt_tokens_per_request']} | "
            f"{r.get('shared_with_previous_tokens', '-')} of {r.get('user_prompt_tokens', '-')} | "
            f"{r['completion_tokens_per_pair']} |")
    lines += ["", "Question forms (keyword: no ? and at most 6 words; question: ends in ?; statement: the rest):", "",
              "| run | prompt | q/passage | keyword | question | statement | words/query |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        f = r["forms"]
        lines.append(f"| {Path(r['run']).name} | {r['prompt_version']} | {r['questions_per_passage']} | "
                     f"{f['keyword']:.0%} | "
                     f"{f['question']:.0%} | {f['statement']:.0%} | {r['words_per_query']} |")
    for r in rows:
        lines += ["", f"First queries of {Path(r['run']).name} ({r['prompt_version']}, {r['questions_per_passage']} "
                      "per passage):", ""]
        lines += [f"- {q}" for q in r["examples"]]
    lines += ["", "## Commands", "", "```bash", COMMANDS, "```", ""]
    return "\n".join(lines)


FINDINGS = "## Findings"  # a section written by hand, from this heading to the next "## ": kept on rewrite


def with_findings(new_md: str, old_md: str | None) -> str:
    """``new_md`` (to_markdown's) with the hand-written findings sections of the .md it replaces put back before its
    ``## Commands``: the tables are this script's, the findings are people's, and a rerun must not drop them."""
    if not old_md:
        return new_md
    kept, inside = [], False
    for line in old_md.splitlines():
        if line.startswith("## "):
            inside = line.startswith(FINDINGS)
        if inside:
            kept.append(line)
    if not kept:
        return new_md
    head, sep, tail = new_md.partition("\n## Commands")
    return head.rstrip("\n") + "\n\n" + "\n".join(kept).strip("\n") + "\n" + sep + tail


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders of projector.generate; the first is the baseline")
    ap.add_argument("--out", type=Path, required=True, help="writes OUT.md and OUT.json")
    args = ap.parse_args(argv)
    tokenize = model_tokenizer()
    rows = [measure(run, tokenize) for run in args.runs]
    write_json(args.out.with_suffix(".json"), {"runs": rows, "commands": COMMANDS})
    md_path = args.out.with_suffix(".md")
    md = with_findings(to_markdown(rows), md_path.read_text(encoding="utf-8") if md_path.is_file() else None)
    write_text(md_path, md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
