import json

import pytest

from projector.formats.corpus import approx_token_count, chunk_text, fingerprint, make_passages, read_documents
from projector.errors import CorpusError
from projector.formats.pairs import read_passages, write_passages


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_bundled_corpus_reads_into_a_few_hundred_passages(repo):
    docs = read_documents(repo / "data/python-reference.jsonl", id_field="id")
    passages, stats = make_passages(docs)
    assert len(docs) == 77
    assert 200 <= len(passages) <= 1500
    assert len({p.passage_id for p in passages}) == len(passages)
    assert stats.duplicates_dropped > 0  # topics repeat paragraphs of each other


def test_missing_file_names_it(tmp_path):
    with pytest.raises(CorpusError, match="nope.jsonl: no such file"):
        read_documents(tmp_path / "nope.jsonl")


def test_empty_file(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(CorpusError, match="empty"):
        read_documents(tmp_path / "empty.jsonl")


def test_binary_file(tmp_path):
    (tmp_path / "blob.jsonl").write_bytes(b"\x00\x01\x02PK\x03\x04" * 100)
    with pytest.raises(CorpusError, match="binary"):
        read_documents(tmp_path / "blob.jsonl")


def test_mixed_encodings_name_the_line(tmp_path):
    good = json.dumps({"text": "plain"}).encode() + b"\n"
    bad = '{"text": "caf\u00e9"}'.encode("latin-1") + b"\n"
    (tmp_path / "mixed.jsonl").write_bytes(good + good + bad)
    with pytest.raises(CorpusError, match=r"mixed.jsonl:3: not valid UTF-8"):
        read_documents(tmp_path / "mixed.jsonl")


def test_bad_json_line_and_wrong_field_are_named(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "ok"}\n{not json}\n')
    with pytest.raises(CorpusError, match=r"a.jsonl:2: invalid JSON"):
        read_documents(tmp_path / "a.jsonl")
    write_jsonl(tmp_path / "b.jsonl", [{"body": "x"}])
    with pytest.raises(CorpusError, match=r"b.jsonl:1: no field 'text'.*--text-field"):
        read_documents(tmp_path / "b.jsonl")


def test_duplicates_and_empties_dropped_and_counted(tmp_path):
    rows = [{"text": "Same text here."}, {"text": "same   TEXT here."}, {"text": "   "}, {"text": "Other."}]
    docs = read_documents(write_jsonl(tmp_path / "d.jsonl", rows))
    passages, stats = make_passages(docs)
    assert [p.text for p in passages] == ["Same text here.", "Other."]
    assert stats.duplicates_dropped == 1 and stats.empty_dropped == 1


def test_over_long_document_is_split_within_limit_with_overlap():
    sentences = [f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(300)]
    text = " ".join(sentences)
    chunks = chunk_text(text, approx_token_count, chunk_tokens=100, overlap_tokens=20)
    assert len(chunks) > 10
    assert all(approx_token_count(c) <= 100 for c in chunks)
    # consecutive chunks share their boundary sentence(s); all content is kept
    last_sentence = chunks[0].rsplit("Sentence", 1)[1]
    assert chunks[1].startswith("Sentence" + last_sentence) or ("Sentence" + last_sentence) in chunks[1]
    joined = " ".join(chunks)
    assert all(s in joined for s in sentences)


def test_one_giant_word_sequence_without_punctuation_is_still_cut():
    text = " ".join(["word"] * 5000)
    chunks = chunk_text(text, approx_token_count, chunk_tokens=64, overlap_tokens=0)
    assert all(approx_token_count(c) <= 64 for c in chunks)
    assert sum(len(c.split()) for c in chunks) == 5000


def test_csv_parquet_folder_and_saved_dataset(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "c.csv").write_text("id,body\n1,first text\n2,second text\n", encoding="utf-8")
    docs = read_documents(tmp_path / "c.csv", text_field="body", id_field="id")
    assert [(d.doc_id, d.text) for d in docs] == [("1", "first text"), ("2", "second text")]

    pq.write_table(pa.table({"text": ["a b", None]}), tmp_path / "p.parquet")
    assert [d.text for d in read_documents(tmp_path / "p.parquet")] == ["a b", ""]

    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "one.md").write_text("# One\n\nhello", encoding="utf-8")
    (folder / "sub" / "two.txt").write_text("world", encoding="utf-8")
    (folder / "skip.bin").write_bytes(b"\x00")
    assert [d.doc_id for d in read_documents(folder)] == ["one.md", "sub/two.txt"]

    datasets.Dataset.from_dict({"text": ["x y", "z"], "id": ["a", "b"]}).save_to_disk(str(tmp_path / "ds"))
    assert [d.doc_id for d in read_documents(tmp_path / "ds", id_field="id")] == ["a", "b"]


def test_duplicate_ids_refused(tmp_path):
    with pytest.raises(CorpusError, match="'x' occurs more than once"):
        read_documents(write_jsonl(tmp_path / "i.jsonl", [{"id": "x", "text": "a"}, {"id": "x", "text": "b"}]),
                       id_field="id")


def test_passages_round_trip_and_fingerprint(tmp_path):
    docs = read_documents(write_jsonl(tmp_path / "r.jsonl", [{"text": "alpha beta"}, {"text": "gamma"}]))
    passages, _ = make_passages(docs)
    write_passages(passages, tmp_path / "passages.jsonl")
    again = read_passages(tmp_path / "passages.jsonl")
    assert [(p.passage_id, p.text) for p in again] == [(p.passage_id, p.text) for p in passages]
    assert fingerprint(again) == fingerprint(passages)
    again[0].text += "!"
    assert fingerprint(again) != fingerprint(passages)
