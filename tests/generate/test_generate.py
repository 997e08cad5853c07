"""generate against a real HTTP server on 127.0.0.1 (tests/openai_server.py), faults injected."""
import json
import random
import signal
import subprocess
import sys
import time

import datasets
import pytest

from openai_server import FakeOpenAI, questions_for
from projector.errors import ProjectorError
from projector.llm.client import public_url
from projector.generate.stage import GenerateConfig, generate, parse_args
from projector.formats.pairs import read_passages
from projector.llm.records import RecordLog

N_PASSAGES = 30


def make_corpus(tmp_path, n_docs=12):
    rows = [{"id": f"doc{i}", "title": f"Topic {i}",
             "text": "\n\n".join(f"Paragraph {j} of document {i} explains idea {i}-{j} in plain words. "
                                 f"It adds a second sentence about detail {j}." for j in range(6))}
            for i in range(n_docs)]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def config(tmp_path, server, **kw):
    base = dict(corpus=str(make_corpus(tmp_path)), id_field="id", out=str(tmp_path / "out"), base_url=server.base_url,
                model="fake-model", chunk_tokens=60, chunk_overlap=0, max_passages=N_PASSAGES, timeout=2.0,
                concurrency=3, backoff=0.05)
    base.update(kw)
    return GenerateConfig(**base)


def check_output(out, n_passages, n_questions):
    """Every chosen passage has exactly its questions, traceable to it; splits never share a passage."""
    dd = datasets.load_from_disk(str(out / "dataset"))
    passages = {p.passage_id: p for p in read_passages(out / "passages.jsonl")}
    rows = [r for split in dd.values() for r in split]
    by_passage = {}
    for r in rows:
        by_passage.setdefault(r["passage_id"], []).append(r["query"])
        assert r["passage"] == passages[r["passage_id"]].text
    assert len(by_passage) == n_passages
    for pid, queries in by_passage.items():
        assert sorted(queries) == sorted(questions_for(passages[pid].text, n_questions)), pid
    split_ids = [set(dd[s]["passage_id"]) for s in ("train", "validation", "test")]
    assert not (split_ids[0] & split_ids[1] or split_ids[0] & split_ids[2] or split_ids[1] & split_ids[2])
    return dd


def test_normal_run_writes_dataset_parquet_manifest(tmp_path):
    with FakeOpenAI() as srv:
        m = generate(config(tmp_path, srv, questions_per_passage=3))
    out = tmp_path / "out"
    dd = check_output(out, N_PASSAGES, 3)
    assert set(dd) == {"train", "validation", "test"} and len(dd["train"]) > len(dd["test"])
    for split in dd:
        assert (out / "parquet" / f"{split}.parquet").exists()
    c = m["counts"]
    assert (c["requests"], c["requested"], c["generated"], c["failed"]) == (N_PASSAGES, 90, 90, 0)
    assert m["tokens"]["prompt_tokens"] > 0 and m["prompt_version"].startswith("qa.v2@")
    assert json.loads((out / "manifest.json").read_text()) == m
    # The whole instruction is one user message, and JSON is asked for.
    assert srv.bodies[0]["messages"][0]["role"] == "user"
    assert srv.bodies[0]["response_format"]["type"] == "json_object"


def test_transient_faults_are_retried_and_output_stays_clean(tmp_path):
    faults = ["429"] * 3 + ["500"] * 3 + ["503", "timeout", "reset", "malformed", "offschema", "preamble", "empty",
                                          "copy", "meta"]
    with FakeOpenAI(faults=faults, hang_seconds=4) as srv:
        cfg = config(tmp_path, srv, concurrency=2, timeout=1.0, max_invalid=6)
        m = generate(cfg)
    check_output(tmp_path / "out", N_PASSAGES, 2)
    c = m["counts"]
    assert c["failed"] == 0
    assert c["transient_faults"] == 9  # 429×3, 5xx×4, time-out, reset: each cost one request
    assert c["invalid_replies"] == 5  # malformed, off-schema, empty strings, verbatim copy, meta: re-asked
    rows = [r for s in datasets.load_from_disk(str(tmp_path / "out" / "dataset")).values() for r in s]
    assert not any(q["query"].startswith("Here are") for q in rows)


def test_a_request_that_never_validates_is_recorded_failed_and_the_run_goes_on(tmp_path):
    with FakeOpenAI(faults=["offschema"] * 3) as srv:
        m = generate(config(tmp_path, srv, concurrency=1, max_invalid=3))
    assert m["counts"]["failed"] == 1 and m["counts"]["generated"] == (N_PASSAGES - 1) * 2
    failed = [r for r in RecordLog(tmp_path / "out" / "records.jsonl").load().values() if r["status"] == "failed"]
    assert len(failed) == 1 and "field questions" in failed[0]["error"]
    # re-running does not ask again unless told to; --retry-failed does
    with FakeOpenAI() as srv:
        m = generate(config(tmp_path, srv))
        assert srv.requests == 0
        m = generate(config(tmp_path, srv, retry_failed=True))
        assert srv.requests == 1
    assert m["counts"]["failed"] == 0
    check_output(tmp_path / "out", N_PASSAGES, 2)


def test_a_request_the_endpoint_never_answered_is_asked_again_by_the_next_run(tmp_path):
    # The server down (here: 5xx until the retries run out) is not the LLM's answer: a resume asks again,
    # where a reply that never validated (above) waits for --retry-failed.
    with FakeOpenAI(faults=["500"] * 7) as srv:
        m = generate(config(tmp_path, srv, concurrency=1))
    lines = (tmp_path / "out" / "records.jsonl").read_text().splitlines()
    failed = [r for r in map(json.loads, lines) if r["status"] == "failed"]
    assert m["counts"]["failed"] == 1 and failed[0]["raw"] is None and failed[0]["faults"] == {"500": 7}
    assert failed[0]["key"] not in RecordLog(tmp_path / "out" / "records.jsonl").load()
    with FakeOpenAI() as srv:
        m = generate(config(tmp_path, srv))
        assert srv.requests == 1
    assert m["counts"]["failed"] == 0
    check_output(tmp_path / "out", N_PASSAGES, 2)


def test_client_errors_stop_with_a_clear_message(tmp_path):
    with FakeOpenAI(faults=["401"] * 100) as srv:
        m = generate(config(tmp_path, srv, concurrency=1, max_passages=2))
    recs = RecordLog(tmp_path / "out" / "records.jsonl").load()
    assert all(r["status"] == "failed" and "answered 401" in r["error"] for r in recs.values())
    assert m["counts"]["failed"] == 2


def test_api_key_is_sent_but_never_written(tmp_path, monkeypatch):
    secret = "sk-test-DO-NOT-LEAK-1234567890"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    with FakeOpenAI() as srv:
        generate(config(tmp_path, srv, max_passages=4))
    assert {k.lower(): v for k, v in srv.headers[0].items()}["authorization"] == f"Bearer {secret}"
    assert public_url(f"https://u:{secret}@example.org:8443/v1?key={secret}") == "https://example.org:8443/v1"
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_resume_refuses_other_settings_but_a_sample_may_grow(tmp_path):
    with FakeOpenAI() as srv:
        generate(config(tmp_path, srv, max_passages=3))
        with pytest.raises(ProjectorError, match="questions_per_passage differ"):
            generate(config(tmp_path, srv, max_passages=3, questions_per_passage=5))
        generate(config(tmp_path, srv, max_passages=8))
        assert srv.requests == 8  # the first 3 were kept
    check_output(tmp_path / "out", 8, 2)


def test_torn_last_record_is_dropped_and_redone(tmp_path):
    with FakeOpenAI() as srv:
        generate(config(tmp_path, srv, max_passages=5))
        log = tmp_path / "out" / "records.jsonl"
        data = log.read_bytes()
        log.write_bytes(data[:-40])  # the last record cut mid-line, as by a kill during write
        generate(config(tmp_path, srv, max_passages=5))
        assert srv.requests == 6
    assert len(log.read_text().splitlines()) == 5
    check_output(tmp_path / "out", 5, 2)


def test_rewrite_applies_to_passages_and_is_recorded(tmp_path):
    with FakeOpenAI() as srv:
        m = generate(config(tmp_path, srv, rewrite=True, max_passages=4))
    passages = read_passages(tmp_path / "out" / "passages.jsonl")
    assert all(p.text.startswith("PLAIN ") and p.original_text for p in passages)
    assert m["rewrite"]["prompt_version"].startswith("rewrite.v1@") and "plain standard English" in m["rewrite"]["prompt"]
    check_output(tmp_path / "out", 4, 2)


def test_prompt_file_override_changes_version(tmp_path):
    prompt = tmp_path / "myqa.txt"
    prompt.write_text('Write $n different questions.\nPassage:\n"""\n$passage\n"""\nJSON {"questions": [...]}')
    with FakeOpenAI() as srv:
        m = generate(config(tmp_path, srv, prompt_file=str(prompt), max_passages=3))
    assert m["prompt_version"].startswith("myqa@")
    bad = tmp_path / "bad.txt"
    bad.write_text("uses $unknown")
    with FakeOpenAI() as srv, pytest.raises(ProjectorError, match="placeholder"):
        generate(config(tmp_path, srv, prompt_file=str(bad), out=str(tmp_path / "o2")))


def test_cli_prints_one_line_errors(tmp_path, repo):
    r = subprocess.run([sys.executable, "-m", "projector.generate", "--corpus", str(tmp_path / "missing.jsonl"),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, cwd=repo)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"projector.generate: error: {tmp_path / 'missing.jsonl'}: no such file "
                                             "or folder. Give --corpus a JSONL/CSV/Parquet file, a folder of .txt/.md "
                                             "files, or a saved datasets folder."]
    assert parse_args(["--corpus", "c", "--out", "o", "--all", "--max-passages", "3"]).max_passages is None


@pytest.mark.parametrize("seed", [1, 2, 3] + [pytest.param(s, marks=pytest.mark.stress) for s in range(100, 120)])
def test_sigkill_at_a_random_point_then_rerun_loses_and_duplicates_nothing(tmp_path, repo, seed):
    rng = random.Random(seed)
    port_file = tmp_path / "port"
    server = subprocess.Popen([sys.executable, str(repo / "tests" / "openai_server.py"), "--port-file", str(port_file),
                               "--delay", "0.05"])
    try:
        for _ in range(100):
            if port_file.exists():
                break
            time.sleep(0.05)
        base_url = f"http://127.0.0.1:{port_file.read_text()}/v1"
        corpus = make_corpus(tmp_path)
        cmd = [sys.executable, "-m", "projector.generate", "--corpus", str(corpus), "--id-field", "id",
               "--out", str(tmp_path / "out"), "--base-url", base_url, "--model", "fake-model", "--chunk-tokens", "60",
               "--chunk-overlap", "0", "--max-passages", str(N_PASSAGES), "--concurrency", "2", "--backoff", "0.05"]
        victim = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log = tmp_path / "out" / "records.jsonl"
        # kill once some, but not all, requests are recorded
        deadline = time.time() + 60
        target = rng.randint(1, N_PASSAGES - 5)
        while time.time() < deadline and (not log.exists() or log.read_bytes().count(b"\n") < target):
            time.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert not (tmp_path / "out" / "manifest.json").exists()  # it really died mid-run
        before = log.read_bytes().count(b"\n")
        assert 0 < before < N_PASSAGES
        r = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        keys = [json.loads(line)["key"] for line in log.read_text().splitlines()]
        assert len(keys) == len(set(keys)) == N_PASSAGES  # nothing asked twice, nothing missing
        check_output(tmp_path / "out", N_PASSAGES, 2)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)


def test_question_checks_clean_trailing_references_and_keep_the_usable_part():
    from projector.llm.replies import question_checker
    from projector.llm.client import InvalidReply, Questions

    check = question_checker("Dictionaries preserve insertion order since Python 3.7.", 2)
    ok = check(Questions(questions=["What does split() split on, according to the passage?", "1. Are dicts ordered?"]))
    assert ok.questions == ["What does split() split on?", "Are dicts ordered?"]
    with pytest.raises(InvalidReply) as e:
        check(Questions(questions=["What is the current implementation of", "What does this passage describe?",
                                   "Do dictionaries keep order?"]))
    assert e.value.partial.questions == ["Do dictionaries keep order?"]
    assert "cut off" in str(e.value) and "refers to the source ('this passage')" in str(e.value)


def test_partial_answers_are_kept_when_re_asking_does_not_help(tmp_path):
    with FakeOpenAI(faults=["meta"] * 3) as srv:
        m = generate(config(tmp_path, srv, concurrency=1, max_passages=3))
    c = m["counts"]
    assert (c["failed"], c["partial"], c["generated"]) == (0, 1, 5)


def test_batch_api_path_collects_the_same_dataset_and_retries_bad_lines(tmp_path):
    faults = ["500", "malformed", "drop", "meta"]  # consumed by the first batch's lines
    with FakeOpenAI(faults=faults) as srv:
        m = generate(config(tmp_path, srv, batch=True, batch_poll=0.01, max_passages=12))
        assert len(srv.batches) == 2  # one round, then one for the 4 lines that came back unusable
        assert srv.requests == 12 + 4
    check_output(tmp_path / "out", 12, 2)
    assert m["counts"]["failed"] == 0 and m["counts"]["generated"] == 24
    recs = RecordLog(tmp_path / "out" / "records.jsonl").load()
    assert all(r["via"] == "batch" for r in recs.values())
    first = (tmp_path / "out" / "batch" / "round-0.jsonl").read_text().splitlines()
    assert len(first) == 12 and json.loads(first[0])["url"] == "/v1/chat/completions"


def test_batch_in_flight_is_resumed_not_resubmitted(tmp_path, repo):
    with FakeOpenAI() as srv:
        srv.batch_polls_to_finish = 10**9  # never finishes while the first run waits
        cfg = config(tmp_path, srv, batch=True, batch_poll=0.01, max_passages=6)
        victim = subprocess.Popen(
            [sys.executable, "-m", "projector.generate", "--corpus", cfg.corpus, "--id-field", "id", "--out", cfg.out,
             "--base-url", srv.base_url, "--model", "fake-model", "--chunk-tokens", "60", "--chunk-overlap", "0",
             "--max-passages", "6", "--batch", "--batch-poll", "0.01"],
            cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        state = tmp_path / "out" / "batch" / "state.json"
        deadline = time.time() + 60
        while time.time() < deadline and not (state.exists() and json.loads(state.read_text()).get("batch_id")):
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)  # dies while its batch is in flight
        victim.wait()
        assert json.loads(state.read_text())["batch_id"] == "batch_1"
        srv.batch_polls_to_finish = 0
        m = generate(cfg)
        assert len(srv.batches) == 1 and m["counts"]["generated"] == 12  # collected, not paid for twice
    check_output(tmp_path / "out", 6, 2)
    keys = [json.loads(line)["key"] for line in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 6


def test_batch_file_only_then_results_from_an_offline_runner(tmp_path):
    cfg = dict(corpus=str(make_corpus(tmp_path)), id_field="id", out=str(tmp_path / "out"), model="some-model",
               chunk_tokens=60, chunk_overlap=0, max_passages=5, batch=True)
    generate(GenerateConfig(**cfg, batch_file_only=True))
    requests = [json.loads(line) for line in (tmp_path / "out" / "batch" / "round-0.jsonl").read_text().splitlines()]
    assert len(requests) == 5 and requests[0]["body"]["model"] == "some-model"
    # what vLLM's run_batch would write: one response line per request
    fake = FakeOpenAI()
    results = [{"custom_id": r["custom_id"], "error": None,
                "response": {"status_code": 200, "body": fake.completion(r["body"], fake.content_for(r["body"], None))}}
               for r in requests]
    fake.httpd.server_close()
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    m = generate(GenerateConfig(**cfg, batch_results=str(tmp_path / "results.jsonl")))
    assert m["counts"]["generated"] == 10 and m["counts"]["pending"] == 0
    check_output(tmp_path / "out", 5, 2)


def test_pairs_task_judges_neighbour_and_random_candidates_within_splits(tmp_path):
    cities = ["Paris", "Berlin", "Madrid", "Rome", "Vienna", "Lisbon"]
    facts = ["has a large museum", "is known for its bridges", "hosts a big market", "has an old cathedral",
             "is busy in summer"]
    rows = [{"id": f"{c}-{i}", "text": f"{c} {fact}."} for c in cities for i, fact in enumerate(facts)]
    corpus = tmp_path / "items.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with FakeOpenAI() as srv:
        m = generate(GenerateConfig(corpus=str(corpus), id_field="id", out=str(tmp_path / "out"), task="pairs",
                                    criterion="same city", base_url=srv.base_url, model="fake-model",
                                    neighbours=3, random_pairs=2, backoff=0.05, validation_fraction=0.2,
                                    test_fraction=0.2))
        assert "same city" in srv.bodies[0]["messages"][0]["content"]
    dd = datasets.load_from_disk(str(tmp_path / "out" / "dataset"))
    labels = []
    for split, d in dd.items():
        for r in d:
            assert r["label"] == int(r["text_a"].split()[0] == r["text_b"].split()[0])  # the judge's verdict
            labels.append(r["label"])
            assert r["id_a"] != r["id_b"] and r["reason"]
    assert 0 < sum(labels) < len(labels)  # both labels occur
    ids = [set(dd[s]["id_a"]) | set(dd[s]["id_b"]) for s in ("train", "validation", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])  # no item in two splits
    assert m["counts"]["positives"] == sum(labels) and m["criterion"] == "same city"
    with pytest.raises(ProjectorError, match="--criterion"):
        generate(GenerateConfig(corpus=str(corpus), out=str(tmp_path / "o2"), task="pairs", base_url=srv.base_url,
                                model="m"))


def test_sigterm_stops_cleanly_and_the_rerun_completes(tmp_path, repo):
    with FakeOpenAI(delay=0.2) as srv:
        cfg = config(tmp_path, srv, max_passages=10)
        cmd = [sys.executable, "-m", "projector.generate", "--corpus", cfg.corpus, "--id-field", "id", "--out", cfg.out,
               "--base-url", srv.base_url, "--model", "fake-model", "--chunk-tokens", "60", "--chunk-overlap", "0",
               "--max-passages", "10", "--concurrency", "1"]
        proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        log = tmp_path / "out" / "records.jsonl"
        deadline = time.time() + 60
        while time.time() < deadline and not (log.exists() and log.read_bytes().count(b"\n") >= 2):
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130 and "interrupted; re-run the same command to resume" in err
        m = generate(cfg)
    assert m["counts"]["generated"] == 20
    check_output(tmp_path / "out", 10, 2)


def test_rewrite_that_drops_most_of_the_text_is_re_asked():
    from projector.llm.replies import rewrite_checker
    from projector.llm.client import InvalidReply, Rewrite

    check = rewrite_checker("The break statement ends the nearest enclosing loop, skipping its else clause. " * 3)
    with pytest.raises(InvalidReply, match="kept"):
        check(Rewrite(text="break_stmt ::= 'break'"))
    assert check(Rewrite(text=" Break ends the innermost loop and skips the loop's else clause. " * 3)).text


def test_generate_works_from_inside_a_running_event_loop(tmp_path):
    import asyncio

    async def notebook_cell():  # Jupyter runs cells inside an event loop
        with FakeOpenAI() as srv:
            return generate(config(tmp_path, srv, max_passages=3))

    m = asyncio.run(notebook_cell())
    assert m["counts"]["generated"] == 6
