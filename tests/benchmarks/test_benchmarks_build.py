"""benchmarks/build.py on tiny synthetic inputs: parsers -> BEIR files. Offline, no downloads."""
import gzip
import importlib.util
import json
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "build.py"
_spec = importlib.util.spec_from_file_location("benchmarks_build", _PATH)
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)


def read_beir(d: Path):
    corpus = [json.loads(l) for l in (d / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    queries = [json.loads(l) for l in (d / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = (d / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
    return corpus, queries, rows, meta


def check_beir_shape(d: Path):
    corpus, queries, rows, meta = read_beir(d)
    assert all(set(c) == {"_id", "title", "text"} for c in corpus)
    assert all(set(q) == {"_id", "text"} for q in queries)
    assert rows[0] == "query-id\tcorpus-id\tscore"
    doc_ids = {c["_id"] for c in corpus}
    q_ids = {q["_id"] for q in queries}
    for r in rows[1:]:
        qid, did, score = r.split("\t")
        assert qid in q_ids and did in doc_ids and score == "1"
    assert meta["queries"] == len(queries) and meta["documents"] == len(corpus)
    assert meta["name"] and meta["source"] and meta["licence"]
    # written atomically: nothing temporary left beside it
    assert [p.name for p in d.parent.iterdir() if p.name.startswith(".")] == []
    return corpus, queries, rows, meta


TASK = {
    "name": "contextual_parametric_knowledge_conflicts",
    "examples": [
        {"input": "\nQuestion: who sang hey jude?\nContext: Hey Jude is a song by Mick Jagger . Mick Jagger wrote it .",
         "target": "Mick Jagger", "target_scores": {"Mick Jagger": 1, "The Beatles": 0}},
        {"input": "\nQuestion: who wrote hey jude?\nContext: Hey Jude is a song by Elvis Presley . Elvis Presley wrote it .",
         "target": "Elvis Presley", "target_scores": {"Elvis Presley": 1, "Paul McCartney": 0}},
        {"input": "\nQuestion: capital of peru?\nContext: ___ Lima is not it ; Cusco is the capital of Peru .",
         "target": "Cusco", "target_scores": {"Cusco": 1, "Lima": 0}},
        # the same question again, with another passage: only the first is kept
        {"input": "\nQuestion: who sang hey jude?\nContext: Hey Jude was sung by Bob Marley .",
         "target": "Bob Marley", "target_scores": {"Bob Marley": 1, "The Beatles": 0}},
    ],
}


def test_nq_wiki_masks_target_and_merges_identical_passages(tmp_path):
    task = tmp_path / "task.json"
    task.write_text(json.dumps(TASK), encoding="utf-8")
    out = build.build_nq_wiki(tmp_path / "out" / "nq-wiki", task_json=task)
    corpus, queries, rows, meta = check_beir_shape(out)
    assert [q["text"] for q in queries] == ["who sang hey jude?", "who wrote hey jude?", "capital of peru?"]
    # two different substituted entities mask to one passage; every occurrence is masked
    assert [c["text"] for c in corpus] == [
        "Hey Jude is a song by ___ . ___ wrote it .",
        "___ Lima is not it ; ___ is the capital of Peru .",
    ]
    assert rows[1:] == ["q0\td0\t1", "q1\td0\t1", "q2\td1\t1"]
    assert meta["name"] == "nq-wiki" and meta["queries"] == 3 and meta["documents"] == 2


def test_nq_wiki_bad_input_is_one_clear_error(tmp_path):
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"examples": [{"input": "no question here", "target": "x"}]}))
    with pytest.raises(build.BuildError, match="example 0"):
        build.build_nq_wiki(tmp_path / "nq", task_json=task)
    assert not (tmp_path / "nq").exists()


POD = """=head1 NAME

perlfaq0 - tiny

=head1 DESCRIPTION

Intro text that belongs to no question.

=head2 How do I reverse a string?

Use C<reverse()> in scalar context, as documented in
L<perlfunc/reverse>, or see L<the docs|http://perldoc.perl.org/>.

    my $reversed = reverse $string;

=over 4

=item * first point

The E<lt>FHE<gt> operator and C<< <> >> stay readable.

=back

=head2 How do I get C<Foo::Bar>?

Get the L<Foo::Bar> module from CPAN. It is the usual way to do this.

=head2 How can I verify a checksum?

Get the L<Business::CreditCard> module.

=head1 AUTHOR

Nobody in particular, and this is not an answer.
"""

FAQ = """                      The Tiny FAQ

Table of Contents

1. Overview
    1.1. What is this FAQ?
    1.2. Why is a question
    split over two lines?

Chapter 1. Overview

1.1. What is this FAQ?

    This document answers questions, frequently asked, about
    a tiny distribution that does not exist.

1.2.\u00a0Why is a question split over two lines, 
    and what does it mean?

    Because the text is wrapped at a fixed width by the converter
    that makes it.

1.2.1. aptitude

    aptitude is a package manager with a text interface, and it is
    described twice in this FAQ.

1.2.1.1. A sub-sub-section

    It stays inside the answer above it.

Chapter 2. More

2.1. aptitude

    The second aptitude section says something else entirely, so
    this question is ambiguous and dropped.

2.2. Short?

    Yes.
"""


def test_pod_and_faq_parsers(tmp_path):
    pod = build.parse_pod(POD)
    assert [q for q, _ in pod] == ["How do I reverse a string?", "How do I get C<Foo::Bar>?",
                                   "How can I verify a checksum?"]
    answer = pod[0][1]
    assert answer.startswith("Use reverse() in scalar context, as documented in perlfunc/reverse, "
                             "or see the docs|http://perldoc.perl.org/. my $reversed = reverse $string;")
    assert "=item" not in answer and "first point" not in answer and "=over" not in answer
    assert "The ltFHgt operator and C<< <> >> stay readable." in answer
    assert "Intro text" not in " ".join(a for _, a in pod) and "Nobody" not in " ".join(a for _, a in pod)

    faq = build.parse_debian_faq(FAQ)
    assert [q for q, _ in faq] == [
        "What is this FAQ?",
        "Why is a question split over two lines,  and what does it mean?",
        "aptitude", "aptitude", "Short?"]
    assert faq[0][1] == ("This document answers questions, frequently asked, about "
                         "a tiny distribution that does not exist.")
    assert "described twice in this FAQ. 1.2.1.1. A sub-sub-section It stays inside the answer above it." in faq[2][1]
    assert "Chapter 2. More" in faq[2][1]


def test_faq_perl_debian_beir(tmp_path):
    pod = tmp_path / "perlfaq1.pod"
    pod.write_text(POD, encoding="utf-8")
    txt = tmp_path / "debian-faq.en.txt.gz"
    with gzip.open(txt, "wt", encoding="utf-8") as f:
        f.write(FAQ)
    out = build.build_faq_perl_debian(tmp_path / "out" / "faq-perl-debian", pod_files=[pod], faq_txt=txt)
    corpus, queries, rows, meta = check_beir_shape(out)
    # short answers (a bare module name, "Yes.") and both "aptitude" questions are dropped
    assert [q["text"] for q in queries] == [
        "How do I reverse a string?", "How do I get C<Foo::Bar>?", "What is this FAQ?",
        "Why is a question split over two lines,  and what does it mean?"]
    assert [q["_id"] for q in queries] == ["q0", "q1", "q2", "q3"]
    assert [c["_id"] for c in corpus] == ["d0", "d1", "d2", "d3"]
    assert corpus[1]["text"] == "Get the Foo::Bar module from CPAN. It is the usual way to do this."
    assert rows[1:] == [f"q{i}\td{i}\t1" for i in range(4)]
    assert meta["name"] == "faq-perl-debian" and meta["documents"] == 4


def test_rebuild_replaces_atomically(tmp_path):
    out = tmp_path / "b" / "x"
    build.write_beir(out, "nq-wiki", [{"_id": "d0", "title": "", "text": "old"}], [{"_id": "q0", "text": "q"}],
                     [("q0", "d0")])
    build.write_beir(out, "nq-wiki", [{"_id": "d0", "title": "", "text": "new"}], [{"_id": "q0", "text": "q"}],
                     [("q0", "d0")])
    corpus, *_ = check_beir_shape(out)
    assert corpus[0]["text"] == "new"


def test_benchmark_dir_prefers_shared_then_builds(tmp_path, monkeypatch):
    shared, data = tmp_path / "shared", tmp_path / "data"
    monkeypatch.setattr(build, "SHARED_DIR", shared)
    monkeypatch.setattr(build, "DATA_DIR", data)
    calls = []

    def fake_builder(out, **kw):
        calls.append(out)
        return build.write_beir(out, "nq-wiki", [{"_id": "d0", "text": "p"}], [{"_id": "q0", "text": "q"}],
                                [("q0", "d0")])

    monkeypatch.setitem(build.BUILDERS, "nq-wiki", fake_builder)
    assert build.benchmark_dir("nq-wiki") == data / "nq-wiki"
    assert build.benchmark_dir("nq-wiki") == data / "nq-wiki"
    assert calls == [data / "nq-wiki"]  # built once, then reused
    (shared / "nq-wiki").mkdir(parents=True)
    (shared / "nq-wiki" / "corpus.jsonl").write_text("")
    assert build.benchmark_dir("nq-wiki") == shared / "nq-wiki"
    with pytest.raises(ValueError):
        build.benchmark_dir("nope")


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert build.main(["nq-wiki", "--out", str(tmp_path / "o"), "--task-json", str(tmp_path / "missing.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert build.main(["faq-perl-debian", "--out", str(tmp_path / "o"), "--pod-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "lacks perlfaq1.pod" in err and "\n" not in err


def _strings(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


def test_committed_pairs_and_results_name_no_machine_paths():
    """The committed benchmark pairs and results travel with every clone: no absolute path of the machine
    that made them; a pairs folder names its corpus where `python benchmarks/build.py NAME` writes it."""
    root = build.REPO_ROOT / "benchmarks"
    files = sorted((root / "pairs").glob("*/manifest.json")) + sorted((root / "pairs").glob("*/config.json")) \
        + sorted((root / "results").glob("*.json")) + sorted((root / "models").glob("*/*.json"))
    assert len(files) >= 2 * len(build.NAMES) + len(build.NAMES)
    for f in files:
        for s in _strings(json.loads(f.read_text(encoding="utf-8"))):
            assert not (s.startswith(("/", "~")) or s[1:3] in (":\\", ":/") or "../" in s), f"{f}: {s!r}"
    for name in build.NAMES:
        want = (Path(build.DATA_DIR) / name / "corpus.jsonl").relative_to(build.REPO_ROOT).as_posix()
        for f in ("manifest.json", "config.json"):
            assert json.loads((root / "pairs" / name / f).read_text(encoding="utf-8"))["corpus"] == want
