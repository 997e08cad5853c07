"""Property-based tests of the corpus readers and the chunker: any input either reads or fails cleanly."""
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projector.formats.corpus import approx_token_count, chunk_text, make_passages, read_documents
from projector.errors import CorpusError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400)


@SETTINGS
@given(rows=st.lists(st.fixed_dictionaries({"text": texts}), min_size=1, max_size=8))
def test_any_jsonl_rows_read_back_and_chunk_without_loss(tmp_path, rows):
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    docs = read_documents(path)
    assert [d.text for d in docs] == [r["text"] for r in rows]
    passages, stats = make_passages(docs, chunk_tokens=32, overlap_tokens=8)
    assert stats.passages == len(passages)
    words = {w for p in passages for w in p.text.split()}
    for r in rows:  # every word of every document survives chunking (or its duplicate does)
        assert set(r["text"].split()) <= words or stats.duplicates_dropped


@SETTINGS
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_read_or_fail_with_a_corpus_error(tmp_path, data):
    for name in ("x.jsonl", "x.csv", "x.txt", "x.parquet"):
        path = tmp_path / name
        path.write_bytes(data)
        try:
            read_documents(path)
        except CorpusError as e:
            assert str(path) in str(e)  # the message names the file


@SETTINGS
@given(text=texts, size=st.integers(16, 80), overlap=st.integers(0, 15))
def test_chunks_respect_the_size_limit(text, size, overlap):
    for chunk in chunk_text(text, approx_token_count, size, overlap):
        assert approx_token_count(chunk) <= size or len(chunk.split()) == 1
