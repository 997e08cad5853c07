"""What makes an LLM reply usable, beyond its JSON schema: the checks ``projector.generate`` hands to the
bounded re-ask (``projector.llm``) for questions (``question_checker``) and rewrites (``rewrite_checker``).

A failed check raises ``InvalidReply`` whose message names what was wrong; the model is asked again with it.
"""
from __future__ import annotations

import re

from projector.corpus import normalise_for_dedup
from projector.llm import InvalidReply, Questions, Rewrite

_PREAMBLE = re.compile(r"^(here (are|is)|sure|certainly|of course|okay|ok,|the following|below are|questions?:)", re.I)
# Small models sometimes ask about the passage itself instead of its content. A trailing reference
# ("..., according to the passage?") is cut off; one left inside the question makes it unusable.
_META_SUFFIX = re.compile(r"[\s,]*\b((as )?(mentioned|described|stated|given|discussed|explained)|according to|based on|from|in)"
                          r" (the|this) (passage|text|paragraph|document|excerpt)\s*(?=\?*$)", re.I)
_META = re.compile(r"\b(th(is|e) (passage|text|paragraph|document|excerpt|above)|who has not seen)\b", re.I)
# A question that ends on one of these was cut off mid-sentence.
_DANGLING = {"of", "about", "the", "a", "an", "to", "in", "for", "with", "and", "or", "on", "by", "is", "are", "from"}
_NUMBERING = re.compile(r"^\s*(?:[-*•]|\(?\d+[.):]|q\d+[.:)]|question \d+[.:)])\s*", re.I)


def question_checker(passage: str, n: int):
    """A validator for a questions reply: strips numbering and trailing references to the passage, drops
    preambles, meta questions, cut-off, copied and duplicate questions; fewer than ``n`` usable is an
    ``InvalidReply`` (re-asked with the reasons named), carrying the usable ones as ``partial``."""
    flat_passage = normalise_for_dedup(passage)

    def check(value: Questions) -> Questions:
        usable, reasons = [], []
        for q in value.questions:
            q = _NUMBERING.sub("", " ".join(str(q).split())).strip().strip('"').strip()
            q = _META_SUFFIX.sub("", q).strip()
            flat = normalise_for_dedup(q)
            if not q:
                reasons.append("an empty question")
            elif q.endswith(":") or _PREAMBLE.match(q):
                reasons.append(f"{q[:40]!r} is a preamble, not a question")
            elif _META.search(q):
                reasons.append(f"{q[:50]!r} refers to the passage; ask about its content instead")
            elif len(q.split()) < 2:
                reasons.append(f"{q!r} is too short")
            elif not q.endswith("?") and q.split()[-1].lower() in _DANGLING:
                reasons.append(f"{q[:50]!r} is cut off")
            elif len(flat.split()) >= 5 and flat.rstrip("?") in flat_passage:
                reasons.append(f"{q[:40]!r} copies the passage word for word")
            elif flat in {normalise_for_dedup(u) for u in usable}:
                reasons.append("two questions are the same")
            else:
                usable.append(q)
        if len(usable) < n:
            detail = f" ({'; '.join(reasons[:3])})" if reasons else ""
            raise InvalidReply(f"expected {n} distinct questions, got {len(usable)} usable{detail}",
                               partial=Questions(questions=usable) if usable else None)
        return Questions(questions=usable[:n])

    return check


def rewrite_checker(original: str, min_kept: float = 0.3):
    """A rewrite keeps the content: one much shorter than the original has dropped facts (small models do)."""

    def check(value: Rewrite) -> Rewrite:
        text = value.text.strip()
        if not text:
            raise InvalidReply("the rewritten text is empty")
        if len(text) < min_kept * len(original.strip()):
            raise InvalidReply(f"the rewrite kept {len(text)} of {len(original.strip())} characters: "
                               "keep every fact, only change the style")
        return Rewrite(text=text)

    return check
