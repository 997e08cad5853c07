"""benchmarks/learning_curve.py on a tiny synthetic BEIR set: the split, the folders it trains on, the results."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "learning_curve.py"
_spec = importlib.util.spec_from_file_location("benchmarks_learning_curve", _PATH)
lc = importlib.util.module_from_spec(_spec)
sys.modules["benchmarks_learning_curve"] = lc   # dataclasses look their module up while the file executes
_spec.loader.exec_module(lc)
from siblings import load  # noqa: E402  (learning_curve.py put benchmarks/ on sys.path)

split_mod = load("learning_curve_split")   # the fixed split and the files cut from its train half
row_folders = load("learning_curve_folders")   # the rows' training folders

from projector.evaluate.data import load_beir  # noqa: E402
from projector.formats import pairs as P  # noqa: E402
from projector.formats.corpus import Passage  # noqa: E402
from projector.errors import DataError  # noqa: E402

WORDS = ["mango", "banana", "cherry", "lemon", "peach", "apple", "pear", "plum", "grape", "melon", "carrot",
         "potato", "tomato", "onion", "garlic", "pumpkin", "spinach", "ginger", "coconut", "walnut", "almond",
         "honey", "salmon", "butter"]


def make_beir(root: Path) -> Path:
    """24 passages with two real queries each, and passage 24: passage 0 again up to case and spacing."""
    root.mkdir(parents=True)
    corpus = [{"_id": f"d{i}", "title": "", "text": f"The {w} grows in warm gardens and tastes of {w} jam."}
              for i, w in enumerate(WORDS)]
    corpus.append({"_id": "d24", "title": "", "text": "THE  mango grows in warm gardens and tastes of MANGO jam."})
    queries, qrels = [], []
    for i, w in enumerate(WORDS + ["mango"]):
        for j, form in enumerate((f"where does {w} grow", f"what does {w} jam taste like #{i}")):
            queries.append({"_id": f"q{i}-{j}", "text": form if i < 24 else f"mango in the garden #{j}"})
            qrels.append(f"q{i}-{j}\td{i}\t1")
    (root / "corpus.jsonl").write_text("".join(json.dumps(c) + "\n" for c in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n")
    return root


def make_llm_pairs(root: Path, passages: list[Passage], n_train: int = 12, n_val: int = 4) -> Path:
    """A pairs folder as projector generate writes it from a corpus file: passage ids DOC#0."""
    chunks = [Passage(f"{p.passage_id}#0", p.passage_id, p.text) for p in passages]
    rows = []
    for k in range(n_train + n_val):
        p = chunks[k % len(chunks)]
        rows += P.qa_rows(p, [f"llm question {k} on {p.text.split()[1]}"], "train" if k < n_train else "validation")
    root.mkdir(parents=True)
    P.write_passages(chunks, root / P.PASSAGES)
    P.write_dataset(rows, root, "qa")
    (root / P.MANIFEST).write_text(json.dumps({"format": P.FORMAT, "format_version": P.FORMAT_VERSION, "task": "qa",
                                               "model": "fake", "prompt_version": "qa.test"}))
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_beir(tmp_path_factory.mktemp("beir") / "tiny")


def test_split_is_deterministic_disjoint_and_keeps_near_duplicates_together(tiny, tmp_path):
    data = load_beir(str(tiny))
    a, b = split_mod.split_set(data), split_mod.split_set(data)
    assert a == b and a.seed == split_mod.SPLIT_SEED
    assert set(a.train_passages).isdisjoint(a.test_passages)
    assert sorted(a.train_passages + a.test_passages) == list(range(25))
    assert a.train_passages and a.test_passages
    for rows, half in ((a.train_queries, set(a.train_passages)), (a.test_queries, set(a.test_passages))):
        assert all(data.qrels[i] <= half for i in rows)
    assert set(a.train_queries).isdisjoint(a.test_queries)
    assert len(a.train_queries) + len(a.test_queries) + a.dropped_queries == len(data.queries)
    assert (0 in a.train_passages) == (24 in a.train_passages)   # near-duplicates share a half
    assert split_mod.split_set(data, seed=1) != a                       # the seed is what moves it
    # the corpus file generate reads: exactly the train-half passages; the style examples: train-half queries
    s = split_mod.write_corpus(str(tiny), tmp_path / "train.jsonl")
    ids = [json.loads(line)["_id"] for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert ids == [data.corpus_ids[r] for r in a.train_passages] and s["written"] == len(ids)
    ex = split_mod.write_examples(str(tiny), tmp_path / "ex.txt", 3)
    assert ex == (tmp_path / "ex.txt").read_text().splitlines() == split_mod.write_examples(str(tiny), tmp_path / "e2", 3)
    assert len(ex) == 3 and set(ex) <= {data.queries[i] for i in a.train_queries}


def test_corpus_and_examples_commands_write_into_a_folder_that_does_not_exist_yet(tiny, tmp_path):
    # the README's commands write under runs/learning-curve/, which a fresh clone does not have
    out = tmp_path / "runs" / "learning-curve"
    assert lc.main(["corpus", str(tiny), str(out / "train.jsonl")]) == 0
    assert lc.main(["examples", str(tiny), str(out / "ex.txt"), "--n", "2"]) == 0
    assert len((out / "train.jsonl").read_text().splitlines()) == len(split_mod.split_set(load_beir(str(tiny))).train_passages)
    assert len((out / "ex.txt").read_text().splitlines()) == 2


def test_run_trains_on_no_test_query_and_writes_the_curve(tiny, tmp_path):
    data = load_beir(str(tiny))
    split = split_mod.split_set(data)
    test_texts = {data.queries[i] for i in split.test_queries}
    llm = make_llm_pairs(tmp_path / "llm", row_folders.train_half_passages(data, split))
    cfg = lc.CurveConfig(sets=[str(tiny)], llm_pairs=[f"tiny={llm}", f"tiny:v2={llm}"], counts=[4, 100],
                         recipes=["today", "issue"], val_queries=4, out=str(tmp_path / "out"),
                         work=str(tmp_path / "work"), bootstrap=20,
                         train_extra={"epochs": 2, "patience": 2, "batch_size": 8})
    res = lc.run(cfg)
    folders = sorted((tmp_path / "work" / "tiny" / "pairs").iterdir())
    assert [f.name for f in folders] == ["llm-4", "llm-v2-4", "real-4"]
    for f in folders:   # read back as train reads them
        pairs = P.load_pairs(f)
        queries = {q for s in ("train", "validation") for q in pairs.splits[s]["query"]}
        assert queries and queries.isdisjoint(test_texts)
        assert {x.doc_id for x in P.read_passages(f / P.PASSAGES)} <= {data.corpus_ids[r] for r in split.train_passages}
        assert len(pairs.splits["train"]["query"]) == int(f.name.rsplit("-", 1)[1])
    written = json.loads((tmp_path / "out" / "learning-curve.json").read_text())
    assert written == json.loads(json.dumps(res))
    s = written["sets"]["tiny"]
    assert s["split"]["seed"] == split_mod.SPLIT_SEED and "sha256" in s["split"]["rule"] and written["split_rule"]
    for n in ("4",):
        c = s["curve"][n]
        assert c["cosine_ndcg10"] == s["cosine_ndcg10"] and 0 < c["cosine_ndcg10"] <= 1
        assert 0 < c["real_ndcg10"] <= 1 and 0 < c["llm_ndcg10"] <= 1 and c["primary_recipe"] == "today"
        assert set(c["recipes"]) == {"today", "issue"}
        assert set(c["recipes"]["issue"]["llm_ndcg10_by_label"]) == {"llm", "llm:v2"}
    assert s["curve"]["100"]["real_ndcg10"] is None and s["curve"]["100"]["llm_ndcg10"] is None
    assert all("missing" in r for r in s["rows"] if r["count"] == 100)
    assert s["llm_folders"]["llm"]["train_pairs"] == 12 and "learning_curve.py run tiny" in s["command"]["run"]
    md = (tmp_path / "out" / "learning-curve.md").read_text()
    assert "## Targets" in md and "Missing rows (not faked)" in md and "the folder has 12 train pairs" in md
    assert "Ablation (issue 11's pieces on/off" in md and "| 4 | llm:v2 | qa.test | off | uniform | issue | synthetic split |" in md
    assert {t["target"] for t in written["targets"]} >= {
        "llm gain over cosine >= real-query gain at every count (today recipe)",
        "no exported projection below cosine beyond noise (95% CI of Δ below 0)"}
    # a rerun of the same rows trains nothing again
    again = lc.run(cfg)["sets"]["tiny"]["rows"]
    assert all(r.get("reused") for r in again if "ndcg10" in r)
    assert [r["ndcg10"] for r in again if "ndcg10" in r] == [r["ndcg10"] for r in s["rows"] if "ndcg10" in r]


def test_llm_folder_with_test_half_passages_is_refused(tiny, tmp_path):
    data = load_beir(str(tiny))
    split = split_mod.split_set(data)
    everything = [Passage(data.corpus_ids[r], data.corpus_ids[r], data.corpus[r]) for r in range(len(data.corpus))]
    llm = make_llm_pairs(tmp_path / "llm", everything)
    cfg = lc.CurveConfig(sets=[str(tiny)], llm_pairs=[f"tiny={llm}"], real=False, out=str(tmp_path / "out"),
                         work=str(tmp_path / "work"))
    with pytest.raises(DataError, match="not train-half passages"):
        lc.run(cfg)
    with pytest.raises(DataError, match="SET=DIR"):
        lc.llm_specs(lc.CurveConfig(sets=[str(tiny)], llm_pairs=["tiny"]))
    assert split.test_passages


def test_compare_dispatches_learning_curve(tiny, capsys):
    spec = importlib.util.spec_from_file_location("benchmarks_compare",
                                                  _PATH.parent / "compare.py")
    compare = importlib.util.module_from_spec(spec)
    sys.modules["benchmarks_compare"] = compare
    spec.loader.exec_module(compare)
    assert compare.main(["--learning-curve", str(tiny), "--recipes", "nope"]) == 2
    assert "--recipes: unknown ['nope']" in capsys.readouterr().err


def test_train_half_only_keeps_the_train_half_of_a_whole_corpus_folder(tiny, tmp_path):
    """``--llm-train-half-only``: a folder generated from the whole corpus (today's committed pairs) gives its
    train-half passages and their questions only, never a test-half passage or a question about one."""
    data = load_beir(str(tiny))
    split = split_mod.split_set(data)
    train_ids = {data.corpus_ids[r] for r in split.train_passages}
    everything = [Passage(data.corpus_ids[r], data.corpus_ids[r], data.corpus[r]) for r in range(len(data.corpus))]
    llm = make_llm_pairs(tmp_path / "llm", everything, n_train=20, n_val=5)
    _, passages, got = row_folders.llm_rows(llm, train_ids, set(), train_half_only=True)
    assert passages and {p.doc_id for p in passages} <= train_ids
    rows = got["rows"]["train"] + got["rows"]["validation"]
    assert rows and {r["doc_id"] for r in rows} <= train_ids
    every = [r for s in ("train", "validation") for r in P.load_split(llm, s)]
    assert len(rows) == sum(r["doc_id"] in train_ids for r in every) < len(every)


def test_llm_rows_validated_on_real_queries_train_on_llm_rows_only(tiny, tmp_path):
    data = load_beir(str(tiny))
    split = split_mod.split_set(data)
    llm = make_llm_pairs(tmp_path / "llm", row_folders.train_half_passages(data, split))
    cfg = lc.CurveConfig(sets=[str(tiny)], llm_pairs=[f"tiny={llm}"], counts=[4], recipes=["today"], val_queries=4,
                         out=str(tmp_path / "out"), work=str(tmp_path / "work"), bootstrap=20,
                         llm_real_validation=True, train_extra={"epochs": 2, "patience": 2, "batch_size": 8})
    s = lc.run(cfg)["sets"]["tiny"]
    pairs = P.load_pairs(tmp_path / "work" / "tiny" / "pairs" / "llm+realval-4")
    real_val = {data.queries[i] for i in row_folders.real_order(split, 4, 0)[0]}
    assert set(pairs.splits["validation"]["query"]) == real_val          # the real rows' validation queries
    assert all(q.startswith("llm question") for q in pairs.splits["train"]["query"])  # trained on LLM rows only
    assert {r["label"] for r in s["rows"]} == {"real", "llm", "llm+realval"} and "--llm-real-validation" in s["command"]["run"]


def test_real_plus_llm_rows_train_on_the_real_rows_queries_and_every_llm_train_pair(tiny, tmp_path):
    data = load_beir(str(tiny))
    split = split_mod.split_set(data)
    llm = make_llm_pairs(tmp_path / "llm", row_folders.train_half_passages(data, split))
    cfg = lc.CurveConfig(sets=[str(tiny)], llm_pairs=[f"tiny:v3={llm}"], counts=[4], recipes=["today"], val_queries=4,
                         out=str(tmp_path / "out"), work=str(tmp_path / "work"), bootstrap=20, llm_plus_real=True,
                         llm_real_validation=True, train_extra={"epochs": 2, "patience": 2, "batch_size": 8})
    res = lc.run(cfg)
    s = res["sets"]["tiny"]
    work = tmp_path / "work" / "tiny" / "pairs"
    mixed, real = P.load_pairs(work / "real+llm-v3-4"), P.load_pairs(work / "real-4")
    llm_train = list(P.load_pairs(llm).splits["train"]["query"])
    # train: the real row's 4 queries and all 12 LLM questions; validation: the real rows' own
    assert sorted(mixed.splits["train"]["query"]) == sorted(list(real.splits["train"]["query"]) + llm_train)
    assert list(mixed.splits["validation"]["query"]) == list(real.splits["validation"]["query"])
    # the LLM questions point at the train-half passage of their document (ids without "#0"), like the real ones
    passage_ids = {x.passage_id for x in P.read_passages(work / "real+llm-v3-4" / P.PASSAGES)}
    assert passage_ids == {data.corpus_ids[r] for r in split.train_passages}
    rows = {r["query"]: r for r in P.read_rows(work / "real+llm-v3-4")}
    assert all(rows[q]["passage_id"] in passage_ids for q in llm_train)
    assert {r["label"]: r["source"] for r in s["rows"]}["real+llm:v3"] == "real+llm" and "ndcg10" in next(
        r for r in s["rows"] if r["label"] == "real+llm:v3")
    assert s["curve"]["4"]["recipes"]["today"]["real_plus_llm_ndcg10_by_label"]["real+llm:v3"] is not None
    assert "--llm-plus-real" in s["command"]["run"]
    assert not any("real+llm" in t["target"] or "real+llm" in t["detail"].split(";")[0] for t in res["targets"]
                   if "every count" in t["target"])  # no target counts a mixed row as an LLM row
    md = (tmp_path / "out" / "learning-curve.md").read_text()
    assert "| N | cosine | real | real+llm:v3 | llm:v3 |" in md and "| 4 | real+llm:v3 | real queries + qa.test | off | uniform | today | real queries |" in md
    assert not (work / "real+llm-v3+realval-4").exists()  # one mixed group per folder, not per validation


def _load_query_difficulty():
    path = _PATH.parent / "query_difficulty.py"
    spec = importlib.util.spec_from_file_location("benchmarks_query_difficulty", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_query_difficulty_ranks_each_query_s_own_passage_under_cosine(tiny, tmp_path, capsys):
    """The real encoder: a passage queried by its own text is 1st; asked for an unrelated passage it is not.
    The table has the real train-half row and one row per LLM folder, with the folder's own train queries."""
    qd = _load_query_difficulty()
    data = load_beir(str(tiny))
    corpus = qd.embed(data.corpus, None, show_progress=False)
    texts = [data.corpus[3], data.corpus[3]]
    r = qd.ranks(texts, [{3}, {20}], corpus)
    assert r[0] == 1 and r[1] > 1 and r.dtype.kind == "i"
    split = split_mod.split_set(data)
    llm = make_llm_pairs(tmp_path / "llm", row_folders.train_half_passages(data, split))
    out = tmp_path / "difficulty.md"
    assert qd.main([str(tiny), str(llm), "--real", "10", "--out", str(out)]) == 0
    table = [line for line in out.read_text().splitlines() if line.startswith("| ")][1:]   # past the header
    assert [line.split(" | ")[0] for line in table] == ["| real train-half", "| llm (LLM, train split)"]
    assert [int(line.split(" | ")[1]) for line in table] == [10, 12]    # --real 10; the folder's 12 train rows
    assert out.read_text() in capsys.readouterr().out


def test_roundtrip_filter_keeps_the_train_questions_cosine_finds_again(tiny, tmp_path):
    """benchmarks/roundtrip_filter.py: the copy's train split is the questions whose own passage ranks <= K
    (the real encoder's ranks), in order; validation as it was; the manifest says what was filtered."""
    path = _PATH.parent / "roundtrip_filter.py"
    spec = importlib.util.spec_from_file_location("benchmarks_roundtrip_filter", path)
    rt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rt)
    data = load_beir(str(tiny))
    split = split_mod.split_set(data)
    llm = make_llm_pairs(tmp_path / "llm", row_folders.train_half_passages(data, split))
    chunks = P.read_passages(llm / P.PASSAGES)
    rows = []   # even: about its own passage's fruit; odd: about the next passage's (a question that misfits)
    for k in range(16):
        about = chunks[(k + k % 2) % len(chunks)].text.split()[1]
        rows += P.qa_rows(chunks[k % len(chunks)], [f"where does {about} grow"], "train" if k < 12 else "validation")
    P.write_dataset(rows, llm, "qa")
    rank = rt.own_ranks(llm, P.read_rows(llm))
    assert list(rank[::2]) == [1] * 6 and min(rank[1::2]) > 1                  # the real encoder's ranks
    assert rt.main([str(llm), str(tmp_path / "out"), "--max-rank", "1,1000"]) == 0
    before = P.load_pairs(llm).splits
    for k in (1, 1000):
        got = P.load_pairs(tmp_path / "out" / f"llm-rt{k}").splits
        assert list(got["train"]["query"]) == [q for q, r in zip(before["train"]["query"], rank) if r <= k]
        assert list(got["validation"]["query"]) == list(before["validation"]["query"])
        manifest = json.loads((tmp_path / "out" / f"llm-rt{k}" / P.MANIFEST).read_text())
        assert manifest["roundtrip_filter"]["max_rank"] == k
    pieces = lc.report_module().row_pieces(P.read_manifest(tmp_path / "out" / "llm-rt1") | {"teacher": None}, "issue")
    assert pieces[1] == "cosine round-trip (rank <= 1)"
