r"""Stage 1: an LLM writes training pairs from your corpus.
(The stage's flow, config -> corpus -> the task's jobs -> records -> pairs folder; each task -- its prompt, jobs,
rows, manifest fields -- is an entry of ``projector.generate.tasks``: qa.py, pairwise.py, judging.py.)

    python -m projector.generate --corpus data/python-reference.jsonl --id-field id --out runs/pairs \
        --max-passages 60                              # qa: questions a user would ask, per passage
    python -m projector.generate --corpus people.jsonl --task pairs --criterion "same nationality" --out runs/nat

Tasks:
  qa     (default, asymmetric) for each passage the LLM writes --questions-per-passage questions it answers,
         in a mix of query forms (prompt qa.v2), or in the style of --query-examples FILE (a handful of your
         users' real queries); --prompt-version v1 is the recipe before (projector.generate.qa). --sample cover picks
         the --max-passages passages to cover the corpus (k-means of the frozen embeddings; projector.generate.sampling).
         Rows: query, passage, passage_id, doc_id, title, question_index.
  pairs  (symmetric) candidate pairs (nearest neighbours under the frozen encoder + random pairs) are judged
         by the LLM: "similar in the sense of CRITERION?". Rows: text_a, text_b, id_a, id_b, label, reason.
         With --judge attribute the LLM instead names each item's value for CRITERION once (one of --labels,
         or a set it proposes from a sample); rows are items: id, text, label, split (projector.generate.attribute).
         Where the endpoint returns log-probabilities the labels are asked as lettered options and each item
         gets a distribution (--label-probabilities); --trusted-labels FILE asks your labelled items first and
         says how well the LLM agrees before the long run (projector.generate.judging, .labelquality).
  --rewrite first rewrites every passage into plain content (prompt overridable); recorded in the manifest,
         to be applied the same way in production.

LLM: with no --base-url (and no OPENAI_BASE_URL) an embedded llama.cpp server is started on 127.0.0.1 with a
small instruct model from the package registry, and stopped at the end. Otherwise any OpenAI-compatible
endpoint (--base-url/--model, key in OPENAI_API_KEY; the key is never printed or written).

Outputs in --out: records.jsonl (every LLM call, append-only: the run resumes from it after a crash or
Ctrl-C), passages.jsonl (the whole retrieval corpus), dataset/ (datasets.DatasetDict train/validation/test,
split by passage with a fixed seed), parquet/<split>.parquet, manifest.json, config.json.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from pathlib import Path

from projector import cli
from projector.errors import DataError, ProjectorError
from projector.files import read_json, write_json
from projector.formats import corpus as corpus_mod
from projector.formats import pairs as pairs_format
from projector.generate import attribute, sampling
from projector.generate.config import GenerateConfig
from projector.generate.tasks import task_for
from projector.llm.client import Rewrite, load_prompt
from projector.llm.records import Job, RecordLog
from projector.llm.replies import rewrite_checker
from projector.llm.runner import Endpoint, run_jobs

# ------------------------------------------------------------------------------------------- the stage


def generate(config: GenerateConfig) -> dict:
    """Run the stage; return the manifest. Resumes from ``out/records.jsonl`` if present."""
    cfg = config
    _check_config(cfg)
    out = Path(cfg.out)
    started = time.time()

    # Inputs: documents -> passages (sized by the encoder's tokenizer), and what the task reads beside them.
    docs = corpus_mod.read_documents(cfg.corpus, cfg.text_field, cfg.id_field, cfg.title_field)
    passages, pstats = corpus_mod.make_passages(docs, _token_counter(cfg.encoder), cfg.chunk_tokens, cfg.chunk_overlap)
    if not passages:
        raise DataError(f"{cfg.corpus}: no non-empty passages after cleaning ({pstats.empty_dropped} empty).")
    corpus_fp = corpus_mod.fingerprint(passages)
    task = task_for(cfg, out)  # qa, pairwise or attribute: projector.generate.tasks
    rewrite_prompt = load_prompt("rewrite", cfg.rewrite_prompt_file) if cfg.rewrite else None
    out.mkdir(parents=True, exist_ok=True)  # only once the inputs read well: a typo in --corpus leaves no empty folder
    _check_resume(out, cfg, corpus_fp, task.prompt.version, rewrite_prompt.version if rewrite_prompt else None,
                  task.resume_identity())

    records = RecordLog(out / "records.jsonl")
    done = records.load(retry_failed=cfg.retry_failed)
    split_of = {p.passage_id: _split(p.doc_id if cfg.split_by == "document" else p.passage_id, cfg) for p in passages}
    task.prepare(passages, split_of)  # e.g. --trusted-labels, read before any LLM call

    with Endpoint(cfg, logprobs=task.logprobs) as llm:
        # Optional rewrite of every passage: the main task then sees the rewritten text.
        if rewrite_prompt is not None:
            jobs = [Job(f"rewrite:{p.passage_id}", {"passage_id": p.passage_id},
                        rewrite_prompt.render(text=p.text), Rewrite, rewrite_checker(p.text)) for p in passages]
            run_jobs(llm, jobs, done, records, cfg, "rewriting")
            for p in passages:
                rec = done.get(f"rewrite:{p.passage_id}")
                if rec and rec["status"] == "ok":
                    p.original_text, p.text = p.text, rec["result"]["text"]
        # The task itself.
        jobs = task.jobs(llm, passages, split_of, done, records)
        run_jobs(llm, jobs, done, records, cfg, task.progress)
        model_name, endpoint = (llm.client.model, llm.endpoint) if llm.client else (None, None)

    # Outputs: rows from the records (nothing but the log is the source of truth), then the dataset.
    rows, failed = task.rows(jobs, done, passages, split_of)
    pairs_format.write_passages(passages, out / pairs_format.PASSAGES)
    pairs_format.write_dataset(rows, out, task.layout)
    manifest = _manifest(cfg, out, passages, pstats, corpus_fp, jobs, done, failed, rows, task.prompt,
                         rewrite_prompt, model_name, endpoint, time.time() - started)
    task.manifest(manifest, rows, jobs, done)
    write_json(out / "manifest.json", manifest)
    print("\n".join(_summary(manifest) + task.report(manifest, rows)), file=sys.stderr)
    task.check(manifest, rows)
    return manifest


# ---------------------------------------------------------------------------------------------- outputs


def _manifest(cfg, out, passages, pstats, corpus_fp, jobs, done, failed, rows, task_prompt, rewrite_prompt,
              model_name, endpoint, seconds) -> dict:
    recs = [done[j.key] for j in jobs if j.key in done]
    prev = read_json(out / "manifest.json") or {}
    usage = {k: sum(r["usage"][k] for r in done.values()) for k in ("prompt_tokens", "completion_tokens")}
    split_counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "validation", "test")}
    counts = {
        "documents": pstats.documents, "passages": len(passages), "empty_dropped": pstats.empty_dropped,
        "duplicates_dropped": pstats.duplicates_dropped, "requests": len(jobs),
        "requested": len(jobs), "generated": len(rows), "pending": sum(j.key not in done for j in jobs),
        "failed": failed, "partial": sum(bool(r.get("partial")) for r in recs),
        "invalid_replies": sum(r["invalid"] for r in recs),
        "transient_faults": sum(sum(r["faults"].values()) for r in recs), "splits": split_counts,
    }
    return {
        "format": pairs_format.FORMAT, "format_version": pairs_format.FORMAT_VERSION, "task": cfg.task,
        # The corpus as the user gave it, never resolved: the manifest travels with the pairs (into a repo, to
        # another machine), so a relative --corpus stays relative; the fingerprint says which content it was.
        "corpus": str(cfg.corpus), "corpus_fingerprint": corpus_fp,
        # A re-run that had nothing left to ask never connects: name what the records were made with.
        "model": model_name or prev.get("model") or next((r["model"] for r in recs), None),
        "endpoint": endpoint or prev.get("endpoint") or ("(not contacted by the last run)" if recs else None),
        "prompt_version": task_prompt.version, "criterion": cfg.criterion,
        "rewrite": ({"prompt": rewrite_prompt.template.template, "prompt_version": rewrite_prompt.version}
                    if rewrite_prompt else None),
        "settings": cfg.settings(), "counts": counts, "tokens": usage,
        "wall_seconds": round(prev.get("wall_seconds", 0) + seconds, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _summary(m: dict) -> list[str]:
    """The run in a few lines (the task's own follow: ``Task.report``)."""
    c = m["counts"]
    return [
        f"projector.generate: {m['task']} pairs from {m['corpus']} (fingerprint {m['corpus_fingerprint']})",
        f"  model      {m['model']} at {m['endpoint']}  prompt {m['prompt_version']}",
        f"  passages   {c['passages']} from {c['documents']} documents "
        f"({c['empty_dropped']} empty, {c['duplicates_dropped']} duplicates dropped)",
        f"  requests   {c['requests']}  failed {c['failed']}  partial {c['partial']}  "
        f"invalid replies re-asked {c['invalid_replies']}  "
        f"transient faults retried {c['transient_faults']}  still pending {c['pending']}",
        f"  pairs      {c['generated']} of {c['requested']} requested  "
        f"(train {c['splits']['train']}, validation {c['splits']['validation']}, test {c['splits']['test']})",
        f"  tokens     {m['tokens']['prompt_tokens']} prompt + {m['tokens']['completion_tokens']} completion  "
        f"wall {m['wall_seconds']} s",
    ]


# ---------------------------------------------------------------------------------------------- helpers


def _check_config(cfg: GenerateConfig) -> None:
    if cfg.task not in ("qa", "pairs"):
        raise ProjectorError(f"--task {cfg.task!r}: use qa or pairs.")
    if cfg.judge not in ("pairwise", "attribute"):
        raise ProjectorError(f"--judge {cfg.judge!r}: use pairwise or attribute.")
    if cfg.judge == "attribute" and cfg.task != "pairs":
        raise ProjectorError("--judge attribute labels items for --task pairs; add --task pairs.")
    if cfg.labels is not None:
        attribute.Labels.parse(cfg.labels)  # an empty or ambiguous set is refused before any call
    if cfg.trusted_labels is not None and cfg.judge != "attribute":
        raise ProjectorError("--trusted-labels are compared with the LLM's item labels; add --judge attribute.")
    if cfg.task == "pairs" and not (cfg.criterion and cfg.criterion.strip()):
        raise ProjectorError("--task pairs needs --criterion, the sense of similarity to judge "
                             '(e.g. --criterion "same nationality").')
    if cfg.query_examples is not None and cfg.task != "qa":
        raise ProjectorError("--query-examples shows the LLM how your users write queries; it is for --task qa.")
    if cfg.sample not in sampling.SAMPLES:
        raise ProjectorError(f"--sample {cfg.sample!r}: use uniform or cover.")
    if cfg.questions_per_passage < 1:
        raise ProjectorError(f"--questions-per-passage {cfg.questions_per_passage}: must be at least 1.")
    if cfg.concurrency < 1:
        raise ProjectorError(f"--concurrency {cfg.concurrency}: must be at least 1.")
    if not (0 <= cfg.validation_fraction < 1 and 0 <= cfg.test_fraction < 1
            and cfg.validation_fraction + cfg.test_fraction < 1):
        raise ProjectorError("--validation-fraction and --test-fraction must be in [0, 1) and sum to less than 1.")
    if cfg.split_by not in ("passage", "document"):
        raise ProjectorError(f"--split-by {cfg.split_by!r}: use passage or document.")
    if cfg.chunk_tokens < 16:
        raise ProjectorError(f"--chunk-tokens {cfg.chunk_tokens}: too small (at least 16).")


def _check_resume(out: Path, cfg, corpus_fp: str, prompt_version: str, rewrite_version, task_identity: dict) -> None:
    """Resuming is only safe with the same corpus and settings: otherwise refuse and say why."""
    identity = {"corpus_fingerprint": corpus_fp, "prompt_version": prompt_version,
                "rewrite_prompt_version": rewrite_version, **cfg.settings(), **task_identity}
    path = out / "config.json"
    previous = read_json(path)
    if previous is not None and (out / "records.jsonl").exists():
        # Either side's keys: a setting named only when set (--judge, --sample, --query-examples) must also
        # differ when the new run leaves it out.
        diff = sorted(k for k in (set(identity) | set(previous)) - {"corpus"} if previous.get(k) != identity.get(k))
        if diff:
            was_v1 = "prompt_version" in diff and str(previous.get("prompt_version")).startswith("qa.v1@")
            hint = " (that run was made with the qa.v1 prompt: add --prompt-version v1)" if was_v1 else ""
            raise ProjectorError(f"{out} holds a run with other settings ({', '.join(diff)} differ){hint}; "
                                 "re-run with the same settings to resume, or give a new --out.")
    write_json(path, {**identity, "corpus": str(cfg.corpus)})


def _split(unit_id: str, cfg) -> str:
    u = int(hashlib.sha256(f"{cfg.seed}:{unit_id}".encode()).hexdigest()[:12], 16) / 16 ** 12
    if u < cfg.test_fraction:
        return "test"
    if u < cfg.test_fraction + cfg.validation_fraction:
        return "validation"
    return "train"


def _token_counter(encoder: str | None):
    """Count tokens with the encoder's tokenizer: the bundled one, a local folder, or a name in the local
    Hugging Face cache. A name that is none of these is an error (it used to fall back silently to an
    approximate count, sizing every passage for an encoder that train would then fail to load)."""
    from projector.embed.encoder import encoder_source
    from projector.embed.endpoint import is_endpoint

    if is_endpoint(encoder):  # the remote model's tokenizer is not here: size passages with the bundled one's
        logging.getLogger("projector.generate").info("--encoder %s: passages sized in all-MiniLM-L6-v2 (WordPiece) tokens; a remote tokenizer (e.g. "
                 "OpenAI's cl100k) counts about as many for English text", encoder)
        encoder = None
    path = encoder_source(encoder)  # the bundled folder for None (ProjectorError if its package is missing)
    if os.path.isdir(path):
        try:
            return corpus_mod.tokenizer_token_counter(path)
        except Exception:  # noqa: BLE001 -- a model folder without tokenizer files: approximate counts
            return corpus_mod.approx_token_count
    try:
        return corpus_mod.tokenizer_token_counter(path, local_files_only=True)
    except Exception as e:  # noqa: BLE001 -- OSError/ValueError/HF errors: all mean "not available here"
        raise ProjectorError(f"--encoder {encoder!r}: no such folder, and no model of that name in the local Hugging "
                             f"Face cache ({type(e).__name__}); pass a local sentence-transformers folder or a "
                             "model name already downloaded (there is no hub download)") from e


# ---------------------------------------------------------------------------------------------------- CLI


PROG = "python -m projector.generate"


def parse_args(argv=None, prog: str = PROG) -> GenerateConfig:
    """GenerateConfig from command-line flags, one per field (``projector.cli.parse``)."""
    return cli.parse(GenerateConfig, argv, prog=prog, doc=__doc__)


def main(argv=None, prog: str = PROG) -> int:
    """Run the stage from the command line; the exit code: 0 done, 2 a user error (one line), 130 interrupted."""
    return cli.run(lambda a: generate(parse_args(a, prog)), "generate", argv)

