"""How generate runs the attribute judge (``--judge attribute``): the label set, which items are asked and in
what order (your labelled items first), how they are asked (option log-probabilities or JSON replies, decided
by a probe of the endpoint), and the label quality said before the long run.

``projector.generate.attribute`` owns the label set, the jobs and the rows; ``projector.generate.labelquality``
the comparison with your labels; ``projector.llm.options`` the letters and their probabilities. This module
puts them in order (``AttributeTask``, the ``attribute`` entry of ``projector.generate.tasks``) and talks to the
LLM through ``projector.llm.runner``.
"""
from __future__ import annotations

import logging
from pathlib import Path

from projector.errors import ProjectorError
from projector.files import write_json
from projector.formats.pairs import ITEMS
from projector.generate import attribute, labelquality, sampling
from projector.llm.client import load_prompt
from projector.llm.records import Job
from projector.llm.runner import run_jobs

log = logging.getLogger("projector.generate")
PROBE_KEY = "probe:logprobs"  # records.jsonl key of the request that checks the endpoint returns log-probabilities


class AttributeTask:
    """--judge attribute: the label set, then one request per item, your labelled items first and compared with
    yours before the long run (``projector.generate.tasks``)."""

    name, layout, progress = "attribute", ITEMS, "labelling"

    def __init__(self, cfg, out):
        self.cfg = cfg
        self.prompt = load_prompt("attribute", cfg.prompt_file)
        self.logprobs = cfg.label_probabilities != "off"
        self.trusted, self.moved = None, []
        self.labels = self.probabilities = self.quality = None

    def prepare(self, passages, split_of) -> None:
        if self.cfg.trusted_labels:
            self.trusted, self.moved = read_trusted(self.cfg, passages, split_of)

    def resume_identity(self) -> dict:
        return {}

    def jobs(self, llm, passages, split_of, done, records) -> list[Job]:
        cfg = self.cfg
        self.labels = label_set(llm, cfg, passages, split_of, done, records, self.trusted)
        jobs, self.probabilities = item_jobs(llm, cfg, passages, self.labels, self.trusted, done, records,
                                             self.prompt)
        if self.trusted:
            self.quality = label_quality(llm, cfg, jobs, self.trusted, self.moved, done, records)
        return jobs

    def rows(self, jobs, done, passages, split_of) -> tuple[list[dict], int]:
        return attribute.rows(jobs, done, passages, split_of)

    def manifest(self, manifest, rows, jobs, done) -> None:
        manifest.update(attribute.manifest_fields(self.labels, rows, jobs, done, self.probabilities))
        if self.trusted:
            manifest["label_quality"] = self.quality

    def report(self, manifest, rows) -> list[str]:
        return [attribute.summary(manifest)]

    def check(self, manifest, rows) -> None:
        attribute.check_usable(rows, manifest["counts"]["pending"], self.cfg.criterion)


def label_set(llm, cfg, passages, split_of, done, records, trusted=None) -> attribute.Labels:
    """--labels, else your labels' own values (--trusted-labels), else the set the LLM proposes once from a
    seeded sample of train items (recorded: a resume keeps it)."""
    if cfg.labels is not None:
        return attribute.Labels.parse(cfg.labels)
    if trusted is not None:
        return attribute.Labels(list(dict.fromkeys(trusted.labels)), source=f"your labels ({trusted.source})")
    prompt = load_prompt("labelset")
    train = [p for p in passages if split_of[p.passage_id] == "train"] or list(passages)
    shown = sampling.uniform(train, attribute.SAMPLE_ITEMS, cfg.seed, salt="labelset")
    run_jobs(llm, [attribute.labelset_job(cfg.criterion, shown, prompt)], done, records, cfg,
              "proposing the label set")
    return attribute.proposed_labels(done.get(attribute.LABELSET_KEY), prompt)


def read_trusted(cfg, passages, split_of) -> tuple:
    """--trusted-labels read (bad input: one DataError naming file, line and field, before any LLM call). Your
    items the split hash put into test or validation move to train: training uses them (never a test item), and
    a validation split labelled by the LLM that held your items would flatter a map trained on them."""
    given = attribute.Labels.parse(cfg.labels) if cfg.labels is not None else None
    trusted = labelquality.read(cfg.trusted_labels, passages, given)
    corpus = [i for i in trusted.ids if i in split_of]
    moved = [i for i in corpus if split_of[i] != "train"]
    for i in moved:
        split_of[i] = "train"
    log.info("%d labelled items in %s: %d in the corpus (asked first), %d not in it (not asked)%s",
             len(trusted), trusted.source, len(corpus), len(trusted) - len(corpus),
             f"; {len(moved)} would have been test or validation items and are train items instead" if moved else "")
    return trusted, moved


def item_jobs(llm, cfg, passages, labels, trusted, done, records, prompt):
    """One job per item (your labelled corpus items first, then the seeded sample: together --max-items), asked
    with option log-probabilities or JSON (``probabilities_mode``); and how they are asked, for the manifest."""
    by_id = {p.passage_id: p for p in passages}
    first = [by_id[i] for i in (trusted.ids if trusted else []) if i in by_id]
    taken = {p.passage_id for p in first}
    rest = [p for p in sampling.uniform(passages, cfg.max_items, cfg.seed) if p.passage_id not in taken]
    if cfg.max_items is not None:
        left = max(0, cfg.max_items - len(first))
        # an item of the sample labelled by an earlier run stays in the folder where your items took its place
        rest = rest[:left] + [p for p in rest[left:] if f"attr:{p.passage_id}" in done]
    chosen = first + rest
    letters = load_prompt("attribute-letters")
    option_jobs = (attribute.option_jobs(chosen, labels, cfg.criterion, letters) if attribute.letters_fit(labels)
                   else None)
    probabilities = probabilities_mode(llm, cfg, labels, option_jobs, done, records)
    probabilities["prompt_version"] = letters.version if probabilities["mode"] == "logprobs" else None
    jobs = option_jobs if probabilities["mode"] == "logprobs" else attribute.item_jobs(chosen, labels, cfg.criterion,
                                                                                      prompt)
    return jobs, probabilities


def probabilities_mode(llm, cfg, labels, option_jobs, done, records) -> dict:
    """How items are asked this run: {"asked": --label-probabilities, "mode": "logprobs" | "json" | None (nothing
    pending), "why": ...}. auto probes the endpoint once with the first pending item's question (recorded under
    PROBE_KEY, at most one retry of a fault) and falls back to JSON replies, saying so in one line."""
    asked = cfg.label_probabilities
    out = {"asked": asked}
    if asked == "off":
        return out | {"mode": "json", "why": "--label-probabilities off"}
    blocker = ("--batch (the Batch API path asks for JSON replies)" if cfg.batch else
               "--prompt-file (your prompt asks for a JSON reply)" if cfg.prompt_file else
               f"{len(labels.names)} labels (lettered options go up to 26)" if option_jobs is None else None)
    if blocker:
        if asked == "on":
            raise ProjectorError(f"--label-probabilities on cannot be used with {blocker}; use auto or off.")
        log.info("label probabilities: not with %s; asking for JSON replies", blocker)
        return out | {"mode": "json", "why": f"not with {blocker}"}
    pending = [j for j in option_jobs if j.key not in done]
    if not pending:
        return out | {"mode": None, "why": "nothing left to ask"}
    first = pending[0]
    probe = Job(PROBE_KEY, {"probe_of": first.key}, first.prompt, first.schema, first.validate, logprobs=first.logprobs)
    done.pop(PROBE_KEY, None)
    client = llm.get()
    retries, client.max_retries = client.max_retries, min(client.max_retries, 1)
    try:
        run_jobs(llm, [probe], done, records, cfg, "asking for log-probabilities")
    finally:
        client.max_retries = retries
    rec = done[PROBE_KEY]
    if rec["status"] == "ok":
        return out | {"mode": "logprobs", "why": f"{llm.endpoint} returns top_logprobs"}
    if asked == "on":
        raise ProjectorError(f"--label-probabilities on: {llm.endpoint} gave no usable log-probabilities "
                             f"({rec['error']}); use auto or off.")
    log.info("label probabilities: %s gave none (%s); asking for JSON replies", llm.endpoint, rec["error"])
    return out | {"mode": "json", "why": f"probe: {rec['error']}"}


def label_quality(llm, cfg, jobs, trusted, moved, done, records) -> dict:
    """Your labelled items asked first; then how the LLM does on them, printed and returned for the manifest."""
    import numpy as np

    yours = dict(zip(trusted.ids, trusted.labels))
    first = [j for j in jobs if j.meta["passage_id"] in yours]
    run_jobs(llm, first, done, records, cfg, "labelling your items")
    ok = [done[j.key] for j in first if j.key in done and done[j.key]["status"] == "ok"]
    base = {"file": trusted.source, "labelled": len(trusted), "in_corpus": len(first), "answered": len(ok),
            "moved_to_train": moved}
    if not ok:
        log.info("label quality: none of your items is in the corpus or answered; nothing to compare")
        return base
    ids = [r["passage_id"] for r in ok]
    from projector.embed.embedding import embed

    text = {p: t for p, t in zip(trusted.ids, trusted.texts)}
    x = np.asarray(embed([text[i] for i in ids], cfg.encoder), dtype=np.float64)  # (n, d), normalised
    quality = base | labelquality.measure([yours[i] for i in ids], [r["result"] for r in ok], x, cfg.seed)
    for line in labelquality.report(quality, trusted.source):
        (log.warning if line.startswith("WARNING") else log.info)(line)
    write_json(Path(cfg.out) / labelquality.FILE, quality)  # now, not at the end: the long run may be stopped
    return quality
