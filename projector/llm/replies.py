"""What makes an LLM reply usable, beyond its JSON schema: the checks ``projector.generate`` hands to the
bounded re-ask (``projector.llm.client``) for questions (``question_checker``) and rewrites (``rewrite_checker``).

A failed check raises ``InvalidReply`` whose message names what was wrong; the model is asked again with it.
"""
from __future__ import annotations

import re

from projector.formats.corpus import normalise_for_dedup
from projector.llm.client import InvalidReply, Questions, Rewrite

_PREAMBLE = re.compile(r"^(here (are|is)|sure|certainly|of course|okay|ok,|the following|below are|questions?:)", re.I)
# Small models sometimes ask about the passage itself instead of its content. A trailing reference
# ("..., according to the passage?") is cut off; one left inside the question makes it unusable.
_SOURCE = r"(passage|text|paragraph|document|documentation|excerpt|snippet|code snippet|code|article|context)"
_META_SUFFIX = re.compile(r"[\s,]*\b((as )?(mentioned|described|stated|given|discussed|explained|shown)|according to"
                          rf"|based on|from|in) (the|this) {_SOURCE}\s*(?=\?*$)", re.I)
# What is left of "What is described in the passage?" once the reference is cut: about the source, not a fact.
VAGUE_ENDINGS = ("described", "discussed", "mentioned", "explained", "stated", "shown", "covered", "presented")
_VAGUE_END = re.compile(r"\b(" + "|".join(VAGUE_ENDINGS) + r")\W*$", re.I)
# Wording that points at the source instead of naming the thing: a user who never saw the passage cannot
# write it ("the given code snippet", "this function"). One pattern per way of saying it; a question that
# matches any is re-asked like any other unusable reply. Kept narrow where users say the same words about
# the thing itself ("the text of a file", "return the given key" are fine).
META_WORDING = (
    r"th(is|e) (paragraph|excerpt|snippet|code snippet)s?",
    r"th(is|e) passage(?! of)",  # "the passage of the act" is a fact, not the source
    r"th(is|e) (text|document)(?! (of|in|file|files|mode|string|field|box|widget|editor|attribute|object|node|"
    r"element|root|type|encoding|format)\b)",
    r"this (function|method|class|code|module|program|script|example|section|article|passage|text|document)",
    # what a package's description is about, as small models write on a domain corpus (debdesc): "What does
    # this gem do?", "the primary goal of this package"
    r"this (package|metapackage|library|gem|crate|tool|utility|plugin|extension|application|app|software|"
    r"project|framework|font|collection|selection)s?",
    r"th(is|e) (given|provided|above|following|preceding|shown|attached) (code|snippet|code snippet|passage|text|"
    r"function|method|class|example|documentation|excerpt|paragraph|document|article)",
    r"according to (the|this) (given |provided |above )?" + _SOURCE,
    r"(in|from) the above",
    r"who has not seen",
)
_META = re.compile(r"\b(" + "|".join(META_WORDING) + r")\b", re.I)
# A short question that names nothing: a user who never saw the passage cannot point at it. Two ways the 1.5B
# model writes them on Wikipedia passages (9% of one nq-wiki run's questions; none of 17,526 real Natural
# Questions queries, 6,000 debdesc or 448 faq-perl-debian queries match):
# - about "it" ("How can it be used?"): six words at most, it/they/them among its last three ("is it safe to eat
#   raw eggs" names its thing: kept); or about a person ("when was she born?", "what did he do"): six words at
#   most, a personal pronoun anywhere;
# - about "the song" and nothing else ("who wrote the song", "when was the show released?"): seven words at
#   most, a "the GENERIC" phrase and at most one word that is neither a function word nor a generic noun.
PRONOUNS = {"it", "they", "them"}
PERSONAL = {"he", "she", "him", "his", "her", "hers", "their", "theirs", "its"}
GENERIC_NOUNS = frozenset("""song songs film movie book novel show series album track character characters player
team game person man woman group band place city country event episode season company actor actress singer artist
author composer writer director king queen war battle story poem speech feature location area building term word
name title role roles part thing music instrument lyrics score theme winner member members people profession job
narrator founder host leader""".split())
FUNCTION_WORDS = frozenset("""who what when where which why how is are was were did do does the a an of in on to
for by with and or at from as be been has have had that this these those it its s name named called whose whom
many much main""".split())
_GENERIC_THE = re.compile(r"\bthe (" + "|".join(sorted(GENERIC_NOUNS)) + r")\b", re.I)


def _names_nothing(q: str) -> bool:
    words = _WORD.findall(q.lower())
    if len(words) <= 6 and (PRONOUNS & set(words[-3:]) or PERSONAL & set(words)):
        return True
    specific = [w for w in words if w not in FUNCTION_WORDS and w not in GENERIC_NOUNS]
    return len(words) <= 7 and len(specific) <= 1 and bool(_GENERIC_THE.search(q))


# The reply form's own placeholders, copied instead of filled in: the prompts show {"questions": ["first query",
# "second query"]}, and the 1.5B model answers "first query", "second query", "third query" (11% of one nq-wiki
# run's questions). Also a numbered series the model makes of them ("first guitar", "second guitar"): an ordinal
# and the same words on two or more questions of one reply ("45th president" alone is a fact, kept).
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "next",
            "another", "last", "1st", "2nd", "3rd", "4th", "5th", "6th")
_PLACEHOLDER = re.compile(r"^\W*(the |a |an |your |my |new |example |sample )?(" + "|".join(ORDINALS) + r"|\d+|"
                          r"(search|keyword|user) )?\s*(search |keyword |user )?(query|queries|question|questions|"
                          r"search|keywords?|statement|string)( \d+)?\W*$", re.I)


def _ordinal_series(questions: list[str]) -> set[str]:
    """The questions of one reply that are "ORDINAL rest" with a rest that another of them shares."""
    rests: dict[str, list[str]] = {}
    for q in questions:
        words = q.lower().strip(" ?.!").split(maxsplit=1)
        if len(words) == 2 and words[0] in ORDINALS:
            rests.setdefault(words[1], []).append(q)
    return {q for qs in rests.values() if len(qs) >= 2 for q in qs}


# A question that ends on one of these was cut off mid-sentence.
_DANGLING = {"of", "about", "the", "a", "an", "to", "in", "for", "with", "and", "or", "on", "by", "is", "are", "from"}
# A question of at least COPY_MIN_WORDS words that is a stretch of the passage, or that shares COPY_RUN words in a
# row with it, was copied (a sentence of the passage passed off as a query), whatever its punctuation and quotes.
COPY_MIN_WORDS, COPY_RUN = 5, 10
_WORD = re.compile(r"\w+")
_NUMBERING = re.compile(r"^\s*(?:[-*•]|\(?\d+[.):]|q\d+[.:)]|question \d+[.:)])\s*", re.I)


def question_checker(passage: str, n: int, examples: tuple[str, ...] | list[str] = ()):
    """A validator for a questions reply: strips numbering and trailing references to the passage, drops
    preambles, meta wording (``META_WORDING``), cut-off, copied and duplicate questions, and copies of the
    style ``examples`` shown in the prompt; fewer than ``n`` usable is an ``InvalidReply`` (re-asked with the
    reasons named), carrying the usable ones as ``partial``."""
    passage_words = _WORD.findall(passage.lower())
    joined = f" {' '.join(passage_words)} "
    runs = {tuple(passage_words[i:i + COPY_RUN]) for i in range(len(passage_words) - COPY_RUN + 1)}

    def copied(q: str) -> bool:
        words = _WORD.findall(q.lower())
        return ((len(words) >= COPY_MIN_WORDS and f" {' '.join(words)} " in joined)
                or any(tuple(words[i:i + COPY_RUN]) in runs for i in range(len(words) - COPY_RUN + 1)))

    flat_examples = {normalise_for_dedup(e).rstrip("?") for e in examples}

    def check(value: Questions) -> Questions:
        usable, reasons = [], []
        cleaned = [_META_SUFFIX.sub("", _NUMBERING.sub("", " ".join(str(q).split())).strip().strip('"').strip()).strip()
                   for q in value.questions]
        series = _ordinal_series(cleaned)
        for q in cleaned:
            flat = normalise_for_dedup(q)
            if not q:
                reasons.append("an empty question")
            elif _PLACEHOLDER.match(q) or q in series:
                reasons.append(f"{q[:40]!r} is a placeholder of the reply form, not a query; write a real one")
            elif q.endswith(":") or _PREAMBLE.match(q):
                reasons.append(f"{q[:40]!r} is a preamble, not a question")
            elif m := _META.search(q) or _VAGUE_END.search(q):
                reasons.append(f"{q[:50]!r} refers to the source ({m.group(0).strip(' ?.!')!r}); name the thing itself")
            elif _names_nothing(q):
                reasons.append(f"{q[:50]!r} names nothing a user could search for; name the thing itself")
            elif len(q.split()) < 2:
                reasons.append(f"{q!r} is too short")
            elif not q.endswith("?") and q.split()[-1].lower() in _DANGLING:
                reasons.append(f"{q[:50]!r} is cut off")
            elif copied(q):
                reasons.append(f"{q[:40]!r} copies the passage word for word")
            elif flat.rstrip("?") in flat_examples:
                reasons.append(f"{q[:40]!r} copies an example query; write one about this passage")
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
