r"""Stage 1b: the LLM as a relevance teacher for generated questions: judged positives and hard negatives.

    projector teach --pairs runs/pairs --out runs/taught             # grade, filter, add judged hard negatives
    projector train --pairs runs/taught --out runs/model             # trains on the judged negatives too

An LLM that writes a question for a passage does not check it, and the training loop's negatives are whatever
else is in the batch. Here the LLM grades (0-3, prompt relevance.v1) how well a passage answers a query:
  - every query against its own passage (--filter): a query graded below --keep-score is dropped, since its
    passage does not answer it (every split: validation and test judge the model by the same standard);
  - each train query against its --candidates nearest other passages under the frozen encoder: those graded
    below --keep-score become the row's judged hard negatives (column ``negatives``, which ``projector.train``
    uses in place of mined ones); those graded at or above are false negatives, never used as negatives.
Requests go passage by passage with the prompt's shared text first, the passage next and the query last, so a
server that caches the prompt prefix (llama.cpp does) evaluates each passage once for all its queries.

Outputs in --out: a pairs folder (``projector.formats.pairs``: the same passages.jsonl, dataset/ and parquet/ with the
``negatives`` column), records.jsonl (every grade, append-only: a re-run resumes, and a larger --candidates
asks only for the new ones), manifest.json (the source folder's manifest under ``source``, the teacher's
counts, grade histograms and LLM cost: calls, tokens, seconds).
"""
from __future__ import annotations

import hashlib
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


from projector import cli
from projector.formats import pairs as pairs_format
from projector.cli import option
from projector.errors import DataError, ProjectorError
from projector.files import read_json, write_json
from projector.llm.client import InvalidReply, Relevance, load_prompt
from projector.llm.records import Job, RecordLog
from projector.llm.runner import Endpoint, EndpointOptions, run_jobs

GRADES = (0, 1, 2, 3)
JSON_SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "enum": list(GRADES)}},
               "required": ["score"]}


@dataclass(kw_only=True)  # kw_only: it redeclares two of EndpointOptions' (keyword-only) fields
class TeachConfig(EndpointOptions):
    """teach's options; the LLM endpoint's are ``projector.llm.runner.EndpointOptions`` (here: greedy, short replies)."""

    pairs: str = option(help="a qa pairs folder (projector generate --task qa)")
    out: str = option(help="output folder: a pairs folder with judged rows (re-running resumes)")
    candidates: int = option(3, help="train queries: nearest other passages under the frozen encoder that the LLM "
                                     "grades; those below --keep-score become judged hard negatives (0: none)")
    filter: bool = option(True, help="grade every query against its own passage and drop those below --keep-score")
    keep_score: int = option(2, help="the grade (0-3) at or above which a passage answers a query")
    encoder: str | None = option(None, help="sentence-transformers name or folder that picks the candidates (the "
                                            "one you train on); None: the bundled all-MiniLM-L6-v2")
    cache_dir: str | None = option(None, help="embedding cache; None: $PROJECTOR_CACHE_DIR or "
                                              "~/.cache/projector/embeddings")
    prompt_file: str | None = option(None, help="override the grading prompt (string.Template with $passage, $title, "
                                                "$query)")
    retry_failed: bool = option(False, help="on resume, ask again for grades recorded as failed")
    temperature: float = option(0.0, help="sampling temperature of the LLM (0: the same grade every time)")
    max_tokens: int = option(16, help="tokens per reply at most (a grade is a few)")

    def settings(self) -> dict:
        """What must match for a re-run to resume (--candidates may grow; --keep-score only changes the output)."""
        return {"encoder": self.encoder}


# ------------------------------------------------------------------------------------------- the stage


def teach(config: TeachConfig) -> dict:
    """Grade the folder's queries, write the judged pairs folder ``config.out``; returns its manifest."""
    cfg = config
    _check_config(cfg)
    started = time.time()
    src, out = Path(cfg.pairs), Path(cfg.out)
    pairs = pairs_format.load_pairs(src)
    if pairs.task != "qa":
        raise DataError(f"{src / pairs_format.MANIFEST}: task {pairs.task!r}; teach grades the questions of a qa "
                        "folder (projector generate --task qa)")
    passages = pairs_format.read_passages(src / pairs_format.PASSAGES)
    prompt = load_prompt("relevance", cfg.prompt_file)
    rows = {s: [dict(r) for r in pairs_format.load_split(src, s)] for s, cols in pairs.splits.items()
            if cols["query"]}                                                  # every column, in dataset order
    out.mkdir(parents=True, exist_ok=True)
    _check_resume(out, cfg, pairs.fingerprint, prompt.version)

    candidates = _candidates(rows.get("train", []), pairs, cfg)       # train row -> passage ids to grade
    by_id = {p.passage_id: p for p in passages}
    asked = [(r["query"], str(r["passage_id"])) for split in rows.values() for r in split] if cfg.filter else []
    asked += [(r["query"], pid) for r, cands in zip(rows.get("train", []), candidates) for pid in cands]
    jobs = _jobs(asked, by_id, prompt, pairs.passage_ids)

    records = RecordLog(out / "records.jsonl")
    done = records.load(retry_failed=cfg.retry_failed)
    with Endpoint(cfg) as llm:
        run_jobs(llm, jobs, done, records, cfg, "grading")
        model_name, endpoint = (llm.client.model, llm.endpoint) if llm.client else (None, None)

    grade = {key: rec["result"]["score"] for key, rec in done.items() if rec["status"] == "ok"}
    kept, counts = _judged_rows(rows, candidates, grade, cfg)
    for split in ("train", "validation"):
        if not counts["splits"][split]:
            raise DataError(f"{out}: no {split} query was graded {cfg.keep_score} or more against its own passage "
                            f"({counts['dropped'][split]} dropped); lower --keep-score or check the grades in "
                            f"{out / 'records.jsonl'}")
    pairs_format.write_passages(passages, out / pairs_format.PASSAGES)
    pairs_format.write_dataset(kept, out, "qa")
    recs = [done[j.key] for j in jobs if j.key in done]
    source = pairs.manifest
    manifest = {
        "format": pairs_format.FORMAT, "format_version": pairs_format.FORMAT_VERSION, "task": "qa",
        "corpus": source.get("corpus"), "corpus_fingerprint": source.get("corpus_fingerprint"),
        "model": model_name or next((r["model"] for r in recs), None),
        "endpoint": endpoint or ("(not contacted by the last run)" if recs else None),
        "prompt_version": prompt.version, "settings": cfg.settings(),
        "teacher": {"pairs": str(cfg.pairs), "pairs_fingerprint": pairs.fingerprint, "filter": cfg.filter,
                    "candidates": cfg.candidates, "keep_score": cfg.keep_score},
        "counts": counts,
        "cost": {"calls": len(recs), "failed": sum(r["status"] != "ok" for r in recs),
                 "prompt_tokens": sum(r["usage"]["prompt_tokens"] for r in recs),
                 "completion_tokens": sum(r["usage"]["completion_tokens"] for r in recs),
                 "llm_seconds": round(sum(r.get("seconds", 0.0) for r in recs), 1)},
        "wall_seconds": round(time.time() - started, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": source,
    }
    write_json(out / pairs_format.MANIFEST, manifest)
    _print_summary(manifest)
    return manifest


# ------------------------------------------------------------------------------------------------ jobs


def job_key(query: str, passage_id: str) -> str:
    """The record key of one grade: the query's text (hashed) and the passage, whichever row asked for it."""
    return f"grade:{hashlib.sha256(query.encode()).hexdigest()[:16]}:{passage_id}"


def grade_checker(value: Relevance) -> Relevance:
    if value.score not in GRADES:
        raise InvalidReply(f"score {value.score} is not one of {list(GRADES)}")
    return value


def _jobs(asked, by_id, prompt, order: list[str]) -> list[Job]:
    """One job per distinct (query, passage), passage by passage in corpus order: consecutive requests share
    the prompt up to the query, which a prefix-caching server evaluates once."""
    rank = {pid: i for i, pid in enumerate(order)}
    jobs, seen = [], set()
    for query, pid in sorted(set(asked), key=lambda qp: (rank[qp[1]], qp[0])):
        key = job_key(query, pid)
        if key not in seen:
            seen.add(key)
            p = by_id[pid]
            jobs.append(Job(key, {"passage_id": pid, "query": query},
                            prompt.render(passage=p.text, title=p.title or "(none)", query=query),
                            Relevance, grade_checker, JSON_SCHEMA))
    return jobs


def _candidates(train_rows: list[dict], pairs, cfg: TeachConfig) -> list[list[str]]:
    """Per train row, the ``--candidates`` passages nearest its query under the frozen encoder, none of them a
    passage any row gives that query as its answer."""
    if not cfg.candidates or not train_rows:
        return [[] for _ in train_rows]
    import torch

    from projector.embed.embedding import embed
    from projector.train.batch import mine_hard_negatives

    corpus = embed(pairs.passage_texts, cfg.encoder, cache_dir=cfg.cache_dir)                  # (N, d)
    queries = embed([r["query"] for r in train_rows], cfg.encoder, cache_dir=cfg.cache_dir)   # (n, d)
    answers: dict[str, set[str]] = {}
    for split_rows in pairs.splits.values():
        for q, pid in zip(split_rows["query"], split_rows["passage_id"]):
            answers.setdefault(q, set()).add(str(pid))
    index = {pid: i for i, pid in enumerate(pairs.passage_ids)}
    pos = torch.tensor([index[str(r["passage_id"])] for r in train_rows])
    known = [{index[pid] for pid in answers[r["query"]]} for r in train_rows]
    near = mine_hard_negatives(torch.as_tensor(queries), pos, torch.as_tensor(corpus), cfg.candidates,
                               margin=None, known=known)                               # (n, candidates)
    return [[pairs.passage_ids[i] for i in row if i >= 0] for row in near.tolist()]


# ------------------------------------------------------------------------------------------------ rows


def _judged_rows(rows: dict, candidates: list[list[str]], grade: dict, cfg: TeachConfig) -> tuple[list[dict], dict]:
    """The rows kept (each with ``negatives``) and the counts: graded, dropped, negatives, false negatives."""
    kept, c = [], Counter()
    hist = {"own": Counter(), "candidates": Counter()}
    dropped = {s: 0 for s in pairs_format.SPLITS}
    splits = {s: 0 for s in pairs_format.SPLITS}
    for split, split_rows in rows.items():
        for i, r in enumerate(split_rows):
            own = grade.get(job_key(r["query"], str(r["passage_id"]))) if cfg.filter else None
            if own is not None:
                hist["own"][own] += 1
            if own is not None and own < cfg.keep_score:
                dropped[split] += 1
                continue
            c["ungraded_kept"] += cfg.filter and own is None
            negatives = []
            for pid in candidates[i] if split == "train" else []:
                g = grade.get(job_key(r["query"], pid))
                if g is None:
                    c["candidates_ungraded"] += 1
                    continue
                hist["candidates"][g] += 1
                if g < cfg.keep_score:
                    negatives.append(pid)
                else:
                    c["false_negatives"] += 1
            c["negatives"] += len(negatives)
            splits[split] += 1
            kept.append({**{k: r.get(k) for k in pairs_format.COLUMNS["qa"]}, "split": split,
                         "question_index": r.get("question_index") or 0, "negatives": negatives})
    counts = {"rows": {s: len(v) for s, v in rows.items()}, "splits": splits, "dropped": dropped,
              "negatives": c["negatives"], "false_negatives": c["false_negatives"],
              "ungraded_kept": c["ungraded_kept"], "candidates_ungraded": c["candidates_ungraded"],
              "grades": {k: {str(g): v[g] for g in GRADES} for k, v in hist.items()}}
    return kept, counts


# ---------------------------------------------------------------------------------------------- helpers


def _check_config(cfg: TeachConfig) -> None:
    if cfg.candidates < 0:
        raise ProjectorError(f"--candidates {cfg.candidates}: must be 0 or more.")
    if cfg.keep_score not in GRADES:
        raise ProjectorError(f"--keep-score {cfg.keep_score}: must be one of {list(GRADES)}.")
    if not cfg.filter and not cfg.candidates:
        raise ProjectorError("--no-filter with --candidates 0 grades nothing; keep --filter or ask for candidates.")
    if cfg.concurrency < 1:
        raise ProjectorError(f"--concurrency {cfg.concurrency}: must be at least 1.")
    if Path(cfg.out).resolve() == Path(cfg.pairs).resolve():
        raise ProjectorError(f"--out {cfg.out} is the --pairs folder; write the judged folder beside it.")


def _check_resume(out: Path, cfg: TeachConfig, source_fp: str, prompt_version: str) -> None:
    """A folder made from other pairs, with another prompt or encoder is never resumed into."""
    mpath = out / pairs_format.MANIFEST
    if not mpath.is_file():
        return
    prev = read_json(mpath)
    was = (prev.get("teacher", {}).get("pairs_fingerprint"), prev.get("prompt_version"), prev.get("settings"))
    now = (source_fp, prompt_version, cfg.settings())
    if was != now:
        names = ("pairs folder content", "prompt", "--encoder")
        changed = [n for n, a, b in zip(names, was, now) if a != b]
        raise ProjectorError(f"{out} was taught with a different {' and '.join(changed)}; use a new --out "
                             "(or delete it).")


def _print_summary(m: dict) -> None:
    c, cost = m["counts"], m["cost"]
    lines = [
        f"projector.teach: graded {m['teacher']['pairs']} with {m['model']} at {m['endpoint']}  "
        f"prompt {m['prompt_version']}",
        f"  kept       train {c['splits']['train']}, validation {c['splits']['validation']}, test "
        f"{c['splits']['test']}  (dropped {c['dropped']['train']} / {c['dropped']['validation']} / "
        f"{c['dropped']['test']}: graded below {m['teacher']['keep_score']} against their own passage)",
        f"  negatives  {c['negatives']} judged hard negatives, {c['false_negatives']} false negatives left out",
        f"  grades     own passage {c['grades']['own']}  candidates {c['grades']['candidates']}",
        f"  cost       {cost['calls']} calls ({cost['failed']} failed), {cost['prompt_tokens']} prompt + "
        f"{cost['completion_tokens']} completion tokens, {cost['llm_seconds']} s of requests, wall "
        f"{m['wall_seconds']} s",
    ]
    print("\n".join(lines), file=sys.stderr)


# ---------------------------------------------------------------------------------------------------- CLI


PROG = "python -m projector.teach"


def parse_args(argv=None, prog: str = PROG) -> TeachConfig:
    """TeachConfig from command-line flags, one per field (``projector.cli.parse``)."""
    return cli.parse(TeachConfig, argv, prog=prog, doc=__doc__)


def main(argv=None, prog: str = PROG) -> int:
    """Run the stage from the command line; the exit code: 0 done, 2 a user error (one line), 130 interrupted."""
    return cli.run(lambda a: teach(parse_args(a, prog)), "teach", argv)

