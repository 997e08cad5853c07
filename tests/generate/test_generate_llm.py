"""The real embedded local LLM, end to end: llama.cpp server + default GGUF model from the registry.

Slow (a minute or two on 2 cores): marked `llm`; run alone with `pytest -m llm`.
"""
import re

import datasets
import pytest

from projector.generate.stage import GenerateConfig, generate
from projector.formats.pairs import read_passages

pytestmark = pytest.mark.llm


def test_embedded_llm_writes_well_formed_questions_for_bundled_passages(tmp_path, repo):
    pytest.importorskip("llama_cpp", reason='needs pip install "llama-cpp-python[server]" (scripts/setup.sh does)')
    m = generate(GenerateConfig(corpus=str(repo / "data/python-reference.jsonl"), id_field="id",
                                out=str(tmp_path / "pairs"), max_passages=4, questions_per_passage=2,
                                concurrency=1, validation_fraction=0.0, test_fraction=0.0))
    assert m["endpoint"].startswith("embedded llama.cpp server") and m["model"]
    assert m["counts"]["failed"] == 0 and m["counts"]["generated"] == 8
    assert m["tokens"]["completion_tokens"] > 0
    rows = list(datasets.load_from_disk(str(tmp_path / "pairs" / "dataset"))["train"])
    passages = {p.passage_id: p.text for p in read_passages(tmp_path / "pairs" / "passages.jsonl")}
    for r in rows:
        q = r["query"]
        assert 2 <= len(q.split()) <= 40, q  # the v2 prompt asks for a keyword query of 2-6 words first
        assert not re.match(r"(?i)^(here|sure|questions?:)", q) and not q.endswith(":"), q
        assert q.lower() not in passages[r["passage_id"]].lower(), q  # not a copy of the passage
    # the two questions of a passage differ
    by_passage = {}
    for r in rows:
        by_passage.setdefault(r["passage_id"], set()).add(r["query"].lower())
    assert all(len(qs) == 2 for qs in by_passage.values())
    print("\n".join(r["query"] for r in rows))
