"""The qa recipe of issue 11 (projector.generate.qa, projector.generate.sampling, projector.llm.replies): query examples in the shared
prompt prefix, the v2 prompt's layout, the v1 prompt kept, meta wording re-asked, cover sampling that only grows.

generate runs against the real HTTP server of tests/openai_server.py on 127.0.0.1.
"""
import json
import os

import datasets
import numpy as np
import pytest

from openai_server import FakeOpenAI
from projector.generate import stage as generate_mod
from projector.errors import ProjectorError
from projector.generate.stage import generate
from projector.llm.client import InvalidReply, Questions, load_prompt
from projector.generate.qa import MAX_EXAMPLES, MAX_SHOT_CHARS, QueryExamples, read_query_examples
from projector.llm.replies import question_checker
from projector.generate.sampling import cover_order, uniform
from test_generate import check_output, config

EXAMPLES = ["python dict keep insertion order", "how do I read a file line by line?",
            "Return an instance of the FileInput class.", "sort list of tuples by second item"]


def prompts(srv) -> list[str]:
    return [b["messages"][0]["content"] for b in srv.bodies]


def common_prefix(texts: list[str]) -> str:
    return os.path.commonprefix(texts)


# ------------------------------------------------------------------------------------------- prompts


def test_v1_prompt_is_byte_identical_so_old_runs_resume():
    # The version committed pairs (benchmarks/pairs/*/manifest.json) were made with: file name + content hash.
    assert load_prompt("qa").version == "qa.v1@1a6ea8e0"


def test_v2_puts_everything_shared_first_and_the_passage_last(tmp_path):
    with FakeOpenAI() as srv:
        m = generate(config(tmp_path, srv, max_passages=5, questions_per_passage=3))
    assert m["prompt_version"].startswith("qa.v2@") and "query_examples" not in m
    sent = prompts(srv)
    shared = common_prefix(sent)
    # What differs from one request to the next starts with the title: rules, forms and JSON form are shared.
    assert "Document title: " in shared and "Passage:" not in shared
    assert "keyword queries" in shared and "natural questions" in shared and "statements" in shared
    assert '{"questions":' in shared and "Write 3 different queries" in shared
    assert all(p.endswith('"""\nYour 3 queries, as JSON only:\n') for p in sent)
    check_output(tmp_path / "out", 5, 3)


def test_query_examples_go_into_the_shared_prefix_before_the_passage(tmp_path):
    ex = tmp_path / "queries.txt"
    ex.write_text("\n".join(EXAMPLES[:2]) + "\n\n" + "\n".join(EXAMPLES[2:]) + "\n", encoding="utf-8")
    with FakeOpenAI() as srv:
        m = generate(config(tmp_path, srv, max_passages=4, query_examples=str(ex)))
    assert m["prompt_version"].startswith("qa-examples.v2@") and m["query_examples"] == EXAMPLES
    shared = common_prefix(prompts(srv))
    positions = [shared.index(f"  - {e}\n") for e in EXAMPLES]
    assert positions == sorted(positions)  # in file order, all inside the part every request shares
    for prompt in prompts(srv):
        assert prompt.index(EXAMPLES[-1]) < prompt.index('Passage:\n"""')
    check_output(tmp_path / "out", 4, 2)
    # Other examples are another run: a resume refuses them.
    ex.write_text("\n".join(EXAMPLES[:3]) + "\n", encoding="utf-8")
    with FakeOpenAI() as srv, pytest.raises(ProjectorError, match="query_examples differ"):
        generate(config(tmp_path, srv, max_passages=4, query_examples=str(ex)))


def test_query_examples_from_jsonl_text_or_query_field(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"text": "  first   query "}) + "\n\n" + json.dumps({"query": "second query", "id": 3})
                    + "\n", encoding="utf-8")
    assert read_query_examples(path) == QueryExamples(["first query", "second query"])


def test_query_examples_without_passages_keep_the_fingerprint_runs_were_made_with():
    # nq-wiki-v2 and debdesc-v2 (benchmarks/pairs) resume only while this stays sha256 of the queries' lines.
    import hashlib
    assert QueryExamples(EXAMPLES).fingerprint() == hashlib.sha256("\n".join(EXAMPLES).encode()).hexdigest()[:16]
    assert QueryExamples(EXAMPLES, ["a passage"] * 4).fingerprint() != QueryExamples(EXAMPLES).fingerprint()


SHOTS = [("Gambas memcached client", "This component allows you to use memcached from Gambas programs."),
         ("who won the 11th season of american idol?", "Phillip Phillips won the eleventh season of American Idol " * 30)]


def write_shots(path, shots=SHOTS):
    path.write_text("".join(json.dumps({"query": q, "passage": p}) + "\n" for q, p in shots), encoding="utf-8")
    return path


def test_query_examples_with_passages_are_few_shot_pairs_in_the_shared_prefix(tmp_path):
    ex = read_query_examples(write_shots(tmp_path / "shots.jsonl"))
    assert ex.queries == [q for q, _ in SHOTS] and ex.passages[0] == SHOTS[0][1]
    long = ex.passages[1]  # cut at a word, marked, one paragraph
    assert len(long) <= MAX_SHOT_CHARS + 2 and long.endswith(" …") and SHOTS[1][1].startswith(long[:-2])
    with FakeOpenAI() as srv:
        m = generate(config(tmp_path, srv, max_passages=4, query_examples=str(tmp_path / "shots.jsonl")))
    assert m["prompt_version"].startswith("qa-shots.v2@")
    assert m["query_examples"] == ex.queries and m["query_example_passages"] == ex.passages
    sent = prompts(srv)
    shared = common_prefix(sent)
    for q, p in zip(ex.queries, ex.passages):  # each pair whole, passage before its query, all shared
        assert f'Passage:\n"""\n{p}\n"""\nA user\'s query: {q}' in shared
    assert "New passage:" not in shared and all('New passage:\n"""' in p for p in sent)
    check_output(tmp_path / "out", 4, 2)
    # Other passages for the same queries are another run: a resume refuses them.
    write_shots(tmp_path / "shots.jsonl", [(q, "Another passage entirely.") for q, _ in SHOTS])
    with FakeOpenAI() as srv, pytest.raises(ProjectorError, match="query_examples differ"):
        generate(config(tmp_path, srv, max_passages=4, query_examples=str(tmp_path / "shots.jsonl")))


@pytest.mark.parametrize("name, content, message", [
    ("empty.txt", "\n  \n", "0 query examples; give 1 to 16"),
    ("many.txt", "".join(f"query number {i}\n" for i in range(MAX_EXAMPLES + 1)), "17 query examples; give 1 to 16"),
    ("rows.jsonl", json.dumps({"question": "x"}) + "\n", "rows.jsonl:1: no query text in field query or text"),
    ("bad.jsonl", "{not json\n", "bad.jsonl:1: invalid JSON"),
    ("long.txt", "ok query\n" + "word " * 100 + "\n", "long.txt:2: an example of 499 characters"),
    ("mixed.jsonl", json.dumps({"query": "q one", "passage": "p"}) + "\n" + json.dumps({"query": "q two"}) + "\n",
     "mixed.jsonl:2: no 'passage' field, unlike the first example"),
    ("blank.jsonl", json.dumps({"query": "q one", "passage": " "}) + "\n", "blank.jsonl:1: field 'passage' must be"),
    ("missing.txt", None, "no such file"),
])
def test_a_bad_examples_file_exits_2_with_one_line(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"text": "One passage about dictionaries."}) + "\n", encoding="utf-8")
    code = generate_mod.main(["--corpus", str(corpus), "--out", str(tmp_path / "out"), "--base-url",
                              "http://127.0.0.1:9/v1", "--model", "m", "--query-examples", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()  # refused before anything was written or asked


def test_examples_need_a_prompt_with_a_place_for_them(tmp_path):
    ex = tmp_path / "q.txt"
    ex.write_text("\n".join(EXAMPLES) + "\n")
    with FakeOpenAI() as srv:
        with pytest.raises(ProjectorError, match="--query-examples needs --prompt-version v2"):
            generate(config(tmp_path, srv, query_examples=str(ex), prompt_version="v1"))
        plain = tmp_path / "plain.txt"
        plain.write_text('Write $n different questions.\nPassage:\n"""\n$passage\n"""\n')
        with pytest.raises(ProjectorError, match=r"no \$examples placeholder"):
            generate(config(tmp_path, srv, query_examples=str(ex), prompt_file=str(plain)))
        mine = tmp_path / "mine.txt"
        mine.write_text('Style:\n$examples\nWrite $n different questions.\nPassage:\n"""\n$passage\n"""\n')
        m = generate(config(tmp_path, srv, query_examples=str(ex), prompt_file=str(mine), max_passages=2))
        assert m["prompt_version"].startswith("mine@") and all(EXAMPLES[0] in p for p in prompts(srv))


def test_prompt_version_v1_keeps_the_old_recipe_and_an_old_run_names_the_flag(tmp_path):
    with FakeOpenAI() as srv:
        m = generate(config(tmp_path, srv, max_passages=3, prompt_version="v1"))
        assert m["prompt_version"] == "qa.v1@1a6ea8e0"
        assert all("Write 2 different questions that a real user" in p for p in prompts(srv))
        # Resuming that run with today's default (v2) is refused, and the refusal says how to resume it.
        with pytest.raises(ProjectorError, match="made with the qa.v1 prompt: add --prompt-version v1"):
            generate(config(tmp_path, srv, max_passages=3))
        generate(config(tmp_path, srv, max_passages=5, prompt_version="v1"))
        assert srv.requests == 5


# ------------------------------------------------------------------------------------------- checks


@pytest.mark.parametrize("question", [
    "What is the purpose of the _onrelease method in the given code snippet?",
    "What is the purpose of the second argument in this function?",
    "What does the passage say about dictionaries?",
    "What is described in the text?",
    "According to the documentation, what does split return?",
    "What does the above code print?",
    "Which module is discussed in this document?",
    "What does this code do?",
    "What does this gem do?",
    "What is the primary goal of this package?",
])
def test_meta_wording_is_refused(question):
    check = question_checker("Dictionaries preserve insertion order.", 1)
    with pytest.raises(InvalidReply, match="refers to the source"):
        check(Questions(questions=[question]))


@pytest.mark.parametrize("question", ["How can it be used?", "What can you do with it?", "How does it work?",
                                      "what is it used for", "when was she born?", "what did he do",
                                      "what was his height?", "who wrote the song", "when was the show released?",
                                      "what is the name of the composer", "who starred in the series?"])
def test_a_short_question_about_it_names_nothing(question):
    check = question_checker("Dictionaries preserve insertion order.", 1)
    with pytest.raises(InvalidReply, match="names nothing"):
        check(Questions(questions=[question]))


@pytest.mark.parametrize("question, kept", [
    ("is it safe to eat raw eggs", None),
    ("who wrote the song hallelujah", None),              # names its song
    ("who sang the theme song for friends", None),
    ("when did she wolf die in game of thrones", None),    # seven words, a pronoun among them: names enough
    ("who is the author of the twilight series?", None),
    ("Does it report STs and reference genes?", None),
    ("how long did it take to build the eiffel tower", None),
    ("What is the gifshuffle package?", None),
    ("Return an instance of the FileInput class.", None),
    ("How do I read the text of a file?", None),
    ("when was the passage of the civil rights act", None),
    ("Return True if the given path is a directory", None),
    ("what are the articles of confederation", None),
    ("What does split return, according to the documentation?", "What does split return?"),
])
def test_the_same_words_about_the_thing_itself_are_kept(question, kept):
    check = question_checker("Dictionaries preserve insertion order.", 1)
    assert check(Questions(questions=[question])).questions == [kept or question]


@pytest.mark.parametrize("copy", [
    "Programmer's note: 'global' is a directive to the parser.",  # other quotes than the passage's
    "global is a directive to the parser",
    "Why: it applies only to code parsed at the same time as the global statement, they say",  # a 10-word run
])
def test_a_sentence_of_the_passage_is_refused_whatever_its_punctuation(copy):
    passage = ("Programmer’s note: `global` is a directive to the parser. It applies only to code parsed at the "
               "same time as the `global` statement.")
    check = question_checker(passage, 1)
    with pytest.raises(InvalidReply, match="copies the passage"):
        check(Questions(questions=[copy]))
    assert check(Questions(questions=["What does the global statement apply to?"])).questions


def test_a_question_that_copies_an_example_is_refused():
    check = question_checker("Dictionaries preserve insertion order.", 1, EXAMPLES)
    with pytest.raises(InvalidReply, match="copies an example query"):
        check(Questions(questions=["Python dict keep insertion order?"]))


@pytest.mark.parametrize("reply", [
    ["first query", "second query", "third query"],          # the reply form's placeholders, copied
    ["first question", "Second Query?", "query 3"],
    ["first guitar", "second guitar", "third guitar"],       # a numbered series made of them
])
def test_the_reply_forms_placeholders_are_refused(reply):
    check = question_checker("The guitar was built in 1950 by Leo Fender in California.", 1)
    with pytest.raises(InvalidReply, match="placeholder of the reply form"):
        check(Questions(questions=reply))


def test_ordinals_that_name_facts_are_kept():
    check = question_checker("The guitar was built in 1950 by Leo Fender in California.", 3)
    kept = ["45th president", "first guitar built by leo fender", "second song on abbey road"]
    assert check(Questions(questions=kept)).questions == kept


def test_a_resumed_run_drops_recorded_questions_that_todays_checks_refuse(tmp_path):
    """A check added after a run cleans its folder on the next run, from the records: a refused question is
    dropped; a passage left with none is asked again."""
    with FakeOpenAI() as srv:
        generate(config(tmp_path, srv, concurrency=1, max_passages=4))
    log = tmp_path / "out" / "records.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    records[0]["result"]["questions"][0] = "first query"  # as the 1.5B model answered before the check existed
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    with FakeOpenAI() as srv:
        m = generate(config(tmp_path, srv, concurrency=1, max_passages=4))
        assert srv.requests == 0  # one usable question left: nothing to ask
    rows = [r for s in datasets.load_from_disk(str(tmp_path / "out" / "dataset")).values() for r in s]
    assert len(rows) == 4 * 2 - 1 and "first query" not in {r["query"] for r in rows}
    assert m["counts"]["dropped_by_checks"] == 1 and m["counts"]["generated"] == 7
    records[1]["result"]["questions"] = ["first query", "second query"]  # nothing usable left: asked again
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    with FakeOpenAI() as srv:
        m = generate(config(tmp_path, srv, concurrency=1, max_passages=4))
        assert srv.requests == 1
    assert m["counts"]["dropped_by_checks"] == 1 and m["counts"]["generated"] == 7
    rows = [r for s in datasets.load_from_disk(str(tmp_path / "out" / "dataset")).values() for r in s]
    assert sum(r["passage_id"] == records[1]["passage_id"] for r in rows) == 2
    assert not {"first query", "second query"} & {r["query"] for r in rows}


def test_meta_wording_in_a_reply_is_re_asked_and_never_becomes_a_query(tmp_path):
    with FakeOpenAI(faults=["snippet", "snippet"]) as srv:
        m = generate(config(tmp_path, srv, concurrency=1, max_passages=4))
    assert m["counts"]["invalid_replies"] == 2 and m["counts"]["failed"] == 0
    assert srv.served["snippet"] == 2 and srv.requests == 6
    rows = [r for s in datasets.load_from_disk(str(tmp_path / "out" / "dataset")).values() for r in s]
    assert rows and not any("code snippet" in r["query"] for r in rows)
    check_output(tmp_path / "out", 4, 2)


# ------------------------------------------------------------------------------------------- sampling


def blobs(sizes=(200, 100, 50, 20, 5), d=16, seed=0):
    """Unit vectors in well-separated clusters of unequal sizes; returns (vectors (n, d), cluster of each)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), d)) * 5
    x = np.vstack([c + rng.normal(size=(s, d)) for c, s in zip(centres, sizes)]).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(len(sizes)), sizes)


def test_cover_order_is_deterministic_grows_as_a_prefix_and_covers_small_clusters():
    x, cluster = blobs()
    order = cover_order(x, 24, seed=0)
    assert len(order) == len(set(order)) == 24
    assert cover_order(x, 24, seed=0) == order
    assert cover_order(x, 7, seed=0) == order[:7] and cover_order(x, 16, seed=0) == order[:16]
    assert cover_order(x, 24, seed=1) != order
    # Every cluster, down to the one of 5 in 375 (1.3%), is among the first 16; a uniform sample of 16 misses
    # that one with probability ~80%.
    assert set(cluster[order[:16]]) == set(range(5))
    assert cover_order(x, 1000, seed=0)[:24] == order and len(cover_order(x, 1000, seed=0)) == len(x)


def test_generate_sample_cover_grows_keeps_its_order_and_is_part_of_the_run(tmp_path):
    with FakeOpenAI() as srv:
        m = generate(config(tmp_path, srv, max_passages=4, sample="cover"))
        assert m["settings"]["sample"] == "cover"
        log = (tmp_path / "out" / "records.jsonl").read_text()
        first = [json.loads(line)["passage_id"] for line in log.splitlines()]
        kept = json.loads((tmp_path / "out" / "sample.json").read_text())["order"]
        assert sorted(first) == sorted(kept[:4])
        generate(config(tmp_path, srv, max_passages=9, sample="cover"))
        assert srv.requests == 9  # the first 4 were kept, 5 more asked
        assert json.loads((tmp_path / "out" / "sample.json").read_text())["order"][:4] == kept[:4]
        with pytest.raises(ProjectorError, match="sample differ"):
            generate(config(tmp_path, srv, max_passages=9))
        # Another folder, same settings: the same passages (the order does not depend on the folder).
        generate(config(tmp_path, srv, max_passages=4, sample="cover", out=str(tmp_path / "again")))
    again = [json.loads(line)["passage_id"] for line in (tmp_path / "again" / "records.jsonl").read_text().splitlines()]
    assert sorted(again) == sorted(first)
    check_output(tmp_path / "out", 9, 2)


def test_uniform_sample_only_grows():
    class P:
        def __init__(self, i):
            self.passage_id = f"d{i}#0"

    items = [P(i) for i in range(50)]
    ids = [p.passage_id for p in uniform(items, 20, seed=0)]
    assert [p.passage_id for p in uniform(items, 5, seed=0)] == ids[:5]
    assert len(uniform(items, None, seed=0)) == 50


def test_each_live_record_says_how_long_its_request_took(tmp_path):
    with FakeOpenAI(delay=0.05) as srv:
        generate(config(tmp_path, srv, max_passages=3, concurrency=1))
    recs = [json.loads(line) for line in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    assert len(recs) == 3 and all(0.05 <= r["seconds"] < 5 for r in recs)
