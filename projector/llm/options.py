"""Lettered options read off the first reply token's log-probabilities: one prompt evaluation per question,
no free text.

The question lists its options as letters (``A. first``, ``B. second``, ...) and asks for the letter only; the
endpoint is asked for one token with ``logprobs=True, top_logprobs=TOP_LOGPROBS`` (OpenAI chat completions,
vLLM, llama-cpp-python's server when its model keeps all logits). The first token's top log-probabilities
become a distribution over the options:

  - a token counts for a letter when it *is* that letter once spaces are stripped ("B" and " B" both count for
    B, summed); the letters are single tokens in practice (Qwen2.5, GPT tokenizers: "A".."Z" each one token),
    and a letter that never shows up among the top tokens is simply absent;
  - an absent letter gets the floor, the lowest log-probability returned (an upper bound of its own: it was
    not among the top ones);
  - the letters' probabilities are renormalised to sum to 1; ``mass`` is how much probability the model put
    on the letters at all (low: it wanted to answer in words).

Measured with the embedded Qwen2.5-Coder-1.5B on debian-pkgs interface (``benchmarks/debian_logprob.py``): the
argmax is right for 53% of items, its 30% most confident answers for 89%.
"""
from __future__ import annotations

import math
import string

from pydantic import BaseModel

LETTERS = string.ascii_uppercase  # at most 26 options
TOP_LOGPROBS = 20  # what OpenAI and vLLM allow at most; enough for MAX_LABELS options


class TopLogprobs(BaseModel):
    """What the endpoint said about the first reply token: its text and the top tokens' log-probabilities."""
    token: str
    top_logprobs: dict[str, float]


def letter_logprobs(top: dict[str, float], letters: str) -> dict[str, float]:
    """The log-probability of each letter that appears among ``top`` (its spellings with spaces summed)."""
    out: dict[str, float] = {}
    for token, lp in top.items():
        t = token.strip()
        if len(t) == 1 and t in letters:
            out[t] = lp if t not in out else max(out[t], lp) + math.log1p(math.exp(-abs(out[t] - lp)))
    return out


def distribution(top: dict[str, float], letters: str) -> tuple[list[float], float]:
    """(probabilities over ``letters`` summing to 1, the probability mass that fell on the letters).

    Letters absent from ``top`` get the floor (the lowest log-probability returned). Raises ValueError when no
    letter is among ``top``: the reply says nothing about the options."""
    found = letter_logprobs(top, letters)
    if not found:
        raise ValueError(f"none of the option letters {letters[0]}..{letters[-1]} is among the reply's top tokens "
                         f"({', '.join(repr(t) for t in list(top)[:5])}, ...)")
    floor = min(top.values())
    lps = [found.get(ch, floor) for ch in letters]
    top_lp = max(lps)
    weights = [math.exp(lp - top_lp) for lp in lps]
    total = sum(weights)
    return [w / total for w in weights], sum(math.exp(lp) for lp in found.values())


def options_listing(names: list[str]) -> str:
    """``A. first\\nB. second ...``: the options as the question shows them."""
    if len(names) > len(LETTERS):
        raise ValueError(f"{len(names)} options; lettered options go up to {len(LETTERS)}")
    return "\n".join(f"{ch}. {name}" for ch, name in zip(LETTERS, names))
