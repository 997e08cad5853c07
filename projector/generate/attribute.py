"""Attribute judging (``generate --task pairs --judge attribute``): the LLM states each item's value once.

Pairwise judging asks "are A and B similar in the sense of CRITERION?" once per candidate pair. Here the LLM
is asked once per item "which value of CRITERION does this item have?", one of a fixed label set; every pair
of labelled items is then an implied labelled pair (same value = similar). n calls give n(n-1)/2 pairs.

This module owns:
  - the label set: given by the user (``--labels "a,b=synonym|other spelling,c"``) or proposed by the LLM
    once from a seeded sample of train items (recorded in records.jsonl under the key ``LABELSET_KEY``, so
    a resumed run keeps the same set);
  - normalising a reply onto the set (case, spacing, hyphens, plurals, given synonyms, close spellings);
    "unknown"/unsure answers are kept as ``UNKNOWN``, never guessed; a value outside the set is re-asked;
  - the jobs (``projector.llm.records.Job``): the label-set proposal and one per item (prompt: shared part
    first, the item text last and truncated to ``ITEM_CHARS``, so llama.cpp's prefix cache reuses the
    shared part from one call to the next). An item is asked one of two ways: a JSON reply naming the label
    (``item_jobs``), or, where the endpoint returns log-probabilities (``--label-probabilities``), the label
    set as lettered options and one token's top log-probabilities read as a distribution over the set
    (``option_jobs``, ``projector.llm.options``: no "unknown" there, every item gets a distribution; the
    record's result holds ``label`` (the argmax), ``distribution`` and ``mass``);
  - the output rows (``projector.formats.pairs`` layout ``items``; pairs are not materialised), the manifest fields
    (label set, counts per label, implied pairs) and the bad-input checks (a criterion the LLM cannot
    apply, a single class).

Which items are asked, the job runner, the LLM client and the folder writer are generate's, records.py's and
pairs.py's; nothing here talks to the LLM or writes a file.
"""
from __future__ import annotations

import difflib
import re
from collections import Counter

from pydantic import BaseModel

from projector.errors import DataError, ProjectorError
from projector.llm.client import InvalidReply
from projector.formats.pairs import COLUMNS, ITEMS, SPLITS, UNKNOWN, item_row
from projector.llm import options
from projector.llm.records import Job, finished

LABELSET_KEY = "labelset"  # the records.jsonl key of the label-set proposal
ITEM_CHARS = 400  # item text shown to the LLM (~90 tokens: the synopsis and first lines carry the gist)
SAMPLE_ITEMS = 30  # train items shown when the LLM proposes the label set
SAMPLE_CHARS = 160  # characters of each of them
MAX_LABELS = 20
_UNSURE = {"unknown", "unsure", "not sure", "none", "n a", "na", "not applicable", "unclear", "cannot tell",
           "can t tell", "cannot determine", "undetermined", "no idea", "not specified", "unspecified"}


class Attribute(BaseModel):
    label: str


class Distribution(BaseModel):
    """An item judged with log-probabilities: the argmax label, the distribution over the label set, and the
    probability mass the model put on the option letters at all."""
    label: str
    distribution: dict[str, float]
    mass: float
    absent: list[str] = []  # labels whose letter was not among the top tokens (given the floor)


class LabelSet(BaseModel):
    labels: list[str]


# ------------------------------------------------------------------------------------------- label set


def _key(text: str) -> str:
    """Comparison key: lower case, punctuation and hyphens as spaces, one space, simple plural dropped."""
    words = re.sub(r"[^0-9a-z]+", " ", str(text).lower()).split()
    return " ".join(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words)


class Labels:
    """A label set: canonical names in order, plus the synonyms that map onto each."""

    def __init__(self, names: list[str], synonyms: dict[str, list[str]] | None = None, source: str = "given"):
        names = [" ".join(str(n).split()) for n in names]
        if not names or any(not n for n in names):
            raise ProjectorError("the label set is empty (or has an empty name); give at least two labels, "
                                 'e.g. --labels "command-line tool,graphical application".')
        self.names, self.source = names, source
        self.synonyms = {n: list((synonyms or {}).get(n, [])) for n in names}
        self._lookup: dict[str, str] = {}
        for n in names:
            for s in [n, *self.synonyms[n]]:
                k = _key(s)
                if k in _UNSURE:
                    raise ProjectorError(f"label {s!r}: {UNKNOWN!r} and its synonyms are reserved for unsure answers.")
                if self._lookup.get(k, n) != n:
                    raise ProjectorError(f"labels {self._lookup[k]!r} and {n!r} are the same label ({s!r}); "
                                         "merge them or name them apart.")
                self._lookup[k] = n
        if len(names) < 2:
            raise ProjectorError(f"the label set has one label ({names[0]!r}): a criterion needs at least two values.")

    @classmethod
    def parse(cls, text: str) -> "Labels":
        """``"a,b=syn1|syn2,c"`` -> Labels (the form of ``--labels``)."""
        names, synonyms = [], {}
        for part in str(text).split(","):
            name, _, syns = part.partition("=")
            name = " ".join(name.split())
            if not name:
                continue
            names.append(name)
            synonyms[name] = [s.strip() for s in syns.split("|") if s.strip()]
        return cls(names, synonyms)

    def normalise(self, value: str) -> str | None:
        """The canonical label for a reply, ``UNKNOWN`` for an unsure one, None for one outside the set."""
        k = _key(value)
        if not k or k in _UNSURE:
            return UNKNOWN
        if k in self._lookup:
            return self._lookup[k]
        squashed = {kk.replace(" ", ""): n for kk, n in self._lookup.items()}  # "command line" == "commandline"
        if k.replace(" ", "") in squashed:
            return squashed[k.replace(" ", "")]
        # A reply naming exactly one label's key as whole words ("a graphical application" -> "graphical").
        inside = {n for kk, n in self._lookup.items() if re.search(rf"\b{re.escape(kk)}\b", k)}
        if len(inside) == 1:
            return inside.pop()
        close = difflib.get_close_matches(k, list(self._lookup), n=2, cutoff=0.8)  # spelling slips
        if close and len({self._lookup[c] for c in close}) == 1:
            return self._lookup[close[0]]
        return None

    def json_schema(self) -> dict:
        """Schema for servers that enforce one (llama.cpp's grammar): the reply can only be a label or unknown."""
        return {"type": "object", "required": ["label"],
                "properties": {"label": {"type": "string", "enum": [*self.names, UNKNOWN]}}}

    def listing(self) -> str:
        return "; ".join(f'"{n}"' for n in self.names)

    def record(self) -> dict:
        return {"names": self.names, "synonyms": {n: s for n, s in self.synonyms.items() if s},
                "source": self.source}


def _labelset_checker(max_labels: int = MAX_LABELS):
    def check(value: LabelSet) -> LabelSet:
        seen, names = set(), []
        for n in value.labels:
            n = " ".join(str(n).split()).strip(" .\"'")
            k = _key(n)
            if k and k not in _UNSURE and k not in seen and k != "other":
                seen.add(k)
                names.append(n)
        if len(names) < 2:
            raise InvalidReply("give at least two distinct values (not 'unknown' or 'other')")
        return LabelSet(labels=names[:max_labels])

    return check


def _item_checker(labels: Labels):
    def check(value: Attribute) -> Attribute:
        label = labels.normalise(value.label)
        if label is None:
            raise InvalidReply(f"{value.label[:60]!r} is not one of the values; answer with one of "
                               f'{labels.listing()} or "{UNKNOWN}"')
        return Attribute(label=label)

    return check


def _short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n].rsplit(" ", 1)[0] + " ..."


def labelset_job(criterion: str, shown: list, prompt) -> Job:
    """The one request asking the LLM to propose the label set from ``shown`` (a seeded sample of train items)."""
    examples = "\n".join(f"- {_short(p.text, SAMPLE_CHARS)}" for p in shown)
    schema = {"type": "object", "required": ["labels"], "properties": {"labels": {
        "type": "array", "minItems": 2, "maxItems": MAX_LABELS, "items": {"type": "string", "minLength": 2}}}}
    return Job(LABELSET_KEY, {"items_shown": [p.passage_id for p in shown]},
               prompt.render(criterion=criterion, examples=examples, n=len(shown), max=MAX_LABELS),
               LabelSet, _labelset_checker(), schema)


def proposed_labels(rec: dict | None, prompt) -> Labels:
    """The label set from the proposal's record (``done[LABELSET_KEY]``); DataError when there is none usable."""
    if rec is None or rec["status"] != "ok":
        why = (rec or {}).get("error") or "no reply"
        raise DataError(f"the LLM proposed no usable label set for --criterion ({why}); give one with --labels a,b,c.")
    return Labels(rec["result"]["labels"], source=f"proposed by {rec['model']} from {len(rec['items_shown'])} "
                                                  f"train items ({prompt.version})")


def item_jobs(chosen, labels: Labels, criterion: str, prompt) -> list[Job]:
    """One job per chosen item: the shared part (criterion, label set, instructions) first, the item last."""
    schema = labels.json_schema()
    check = _item_checker(labels)
    return [Job(f"attr:{p.passage_id}", {"passage_id": p.passage_id},
                prompt.render(criterion=criterion, labels=labels.listing(), unknown=UNKNOWN,
                              text=_short(p.text, ITEM_CHARS)),
                Attribute, check, schema) for p in chosen]


def _option_checker(labels: Labels):
    letters = options.LETTERS[:len(labels.names)]

    def check(value: options.TopLogprobs) -> Distribution:
        try:
            probs, mass = options.distribution(value.top_logprobs, letters)
        except ValueError as e:
            raise InvalidReply(str(e)) from None
        dist = {n: round(p, 6) for n, p in zip(labels.names, probs)}
        seen = options.letter_logprobs(value.top_logprobs, letters)
        return Distribution(label=max(dist, key=dist.get), distribution=dist, mass=round(mass, 6),
                            absent=[n for ch, n in zip(letters, labels.names) if ch not in seen])

    return check


def option_jobs(chosen, labels: Labels, criterion: str, prompt) -> list[Job]:
    """One job per chosen item asking for one letter's log-probabilities (keys as ``item_jobs``': a run resumes
    across the two ways of asking, each item answered once)."""
    listing = options.options_listing(labels.names)
    check = _option_checker(labels)
    return [Job(f"attr:{p.passage_id}", {"passage_id": p.passage_id},
                prompt.render(criterion=criterion, options=listing, text=_short(p.text, ITEM_CHARS)),
                options.TopLogprobs, check, logprobs=options.TOP_LOGPROBS) for p in chosen]


def letters_fit(labels: Labels) -> bool:
    """Whether the label set can be asked as lettered options (A..Z)."""
    return len(labels.names) <= len(options.LETTERS)


# ---------------------------------------------------------------------------------------------- outputs


def rows(jobs, done: dict, passages, split_of) -> tuple[list[dict], int]:
    """Labelled items from the recorded results (unknown kept as ``UNKNOWN``; the distribution where the item
    was judged with log-probabilities), and the number failed."""
    by_id = {p.passage_id: p for p in passages}
    ok, failed = finished(jobs, done)
    out = []
    for rec in ok:
        p = by_id[rec["passage_id"]]
        out.append(item_row(p, rec["result"]["label"], split_of[p.passage_id], rec["result"].get("distribution")))
    return out, failed


def implied_pairs(labels: list[str]) -> dict:
    """Pairs implied by item labels (unknown items take part in none): total and same-label ones."""
    c = Counter(x for x in labels if x != UNKNOWN)
    n = sum(c.values())
    same = sum(v * (v - 1) // 2 for v in c.values())
    return {"pairs": n * (n - 1) // 2, "positives": same}


def manifest_fields(labels: Labels, items: list[dict], jobs, done: dict, probabilities: dict) -> dict:
    """``probabilities``: how this run asked (``mode``: "logprobs" or "json", and why); what the records say
    (items judged each way, mean mass on the letters) is added here, so a folder labelled partly each way
    (a resume with another --label-probabilities) says so."""
    counts = Counter(r["label"] for r in items)
    per_split = {s: implied_pairs([r["label"] for r in items if r["split"] == s]) for s in SPLITS}
    calls = sum(1 for j in jobs if j.key in done) + (LABELSET_KEY in done)
    judged_lp = [done[j.key]["result"] for j in jobs if j.key in done and done[j.key]["status"] == "ok"
                 and "distribution" in done[j.key]["result"]]
    masses = [r["mass"] for r in judged_lp]
    # how often each label's letter was missing from the top tokens: never seen at all means it is not one
    # token for this model, or the model never considers that option
    absent = Counter(n for r in judged_lp for n in r.get("absent", []))
    judged = {"logprobs": len(masses), "json": sum(1 for r in items if "distribution" not in r)}
    labelled_by = "logprobs" if not judged["json"] else "json" if not judged["logprobs"] else "mixed"
    return {"judge": "attribute", "layout": ITEMS, "columns": list(COLUMNS[ITEMS]), "unknown_label": UNKNOWN,
            "labels": labels.record(), "item_chars": ITEM_CHARS, "llm_calls": calls,
            "label_counts": {n: counts.get(n, 0) for n in [*labels.names, UNKNOWN]},
            "implied_pairs": per_split,
            "label_probabilities": {**probabilities, "labelled_by": labelled_by if items else None,
                                    "items_judged": judged,
                                    "mean_mass": round(sum(masses) / len(masses), 4) if masses else None,
                                    "letter_absent": {n: absent.get(n, 0) for n in labels.names} if masses else None}}


def check_usable(items: list[dict], pending: int, criterion: str) -> None:
    """Refuse (exit 2) a finished run whose labels cannot teach anything; the records stay for a re-run."""
    if pending or not items:
        return
    known = Counter(r["label"] for r in items if r["label"] != UNKNOWN)
    if not known:
        raise DataError(f"--criterion {criterion!r}: the LLM answered {UNKNOWN!r} for all {len(items)} items; "
                        "it cannot apply this criterion to these texts (reword it, or give --labels).")
    if len(known) == 1:
        (only, n), = known.items()
        raise DataError(f"--criterion {criterion!r}: all {n} labelled items got the same label {only!r} "
                        f"({len(items) - n} unknown); one class teaches nothing (reword the criterion or --labels).")


def summary(m: dict) -> str:
    c = m["label_counts"]
    lp = m["label_probabilities"]
    how = {"logprobs": "option log-probabilities", "json": "JSON replies", "mixed": "partly each way",
           None: "-"}[lp["labelled_by"]]
    mass = f", mean mass on the letters {lp['mean_mass']}" if lp["mean_mass"] is not None else ""
    never = [n for n, k in (lp.get("letter_absent") or {}).items() if k == lp["items_judged"]["logprobs"]]
    if never:
        mass += (f"; WARNING: the letters of {never} never appeared among the top tokens (not one token for this "
                 "model, or never considered)")
    return (f"  labels     {m['labels']['source']}: " + ", ".join(f"{k} {v}" for k, v in c.items())
            + f"\n  judged by  {how} ({lp['items_judged']['logprobs']} items with a distribution{mass})"
            + f"\n  implied    {m['implied_pairs']['train']['pairs']} train pairs "
              f"({m['implied_pairs']['train']['positives']} same-label) from {m['llm_calls']} LLM calls")
