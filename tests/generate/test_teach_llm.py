"""teach with the real embedded local LLM (llama.cpp server + the registry's default GGUF): a query no passage
answers is graded down and dropped, queries their passage answers are kept, every grade is in range.

Slow (a minute or two on 2 cores): marked `llm`; run alone with `pytest -m llm`.
"""
import json

import pytest

from projector.formats import pairs as P
from projector.generate.teach import TeachConfig, teach
from test_teach import make_pairs

pytestmark = pytest.mark.llm


def test_embedded_llm_grades_drop_an_unanswered_query_and_keep_answered_ones(tmp_path):
    pytest.importorskip("llama_cpp", reason='needs pip install "llama-cpp-python[server]" (scripts/setup.sh does)')
    make_pairs(tmp_path)
    m = teach(TeachConfig(pairs=str(tmp_path / "pairs"), out=str(tmp_path / "taught"), candidates=1, concurrency=1,
                          timeout=600.0))
    assert m["endpoint"].startswith("embedded llama.cpp server") and m["cost"]["failed"] == 0
    records = [json.loads(line) for line in (tmp_path / "taught" / "records.jsonl").read_text().splitlines()]
    assert all(r["result"]["score"] in (0, 1, 2, 3) for r in records)
    gold = next(r for r in records if r["query"] == "price of gold in 1850")
    assert gold["result"]["score"] < 2 and m["counts"]["dropped"]["train"] >= 1
    train = P.load_pairs(tmp_path / "taught").splits["train"]["query"]
    assert "price of gold in 1850" not in train and len(train) >= 5  # most fruit questions are kept
    print(m["counts"]["grades"], m["cost"])
