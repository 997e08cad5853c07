"""The learning curve (issue 11, piece 6): LLM-made vs real training queries at equal counts, on the same passages.

    python benchmarks/learning_curve.py corpus nq-wiki runs/learning-curve/nq-wiki-train.jsonl
    python benchmarks/learning_curve.py examples nq-wiki runs/learning-curve/nq-wiki-examples.txt --n 6
    python -m projector.generate --corpus runs/learning-curve/nq-wiki-train.jsonl --id-field _id \
        --chunk-tokens 4096 --chunk-overlap 0 --max-passages 1500 --out runs/llm-nq-wiki
    python benchmarks/learning_curve.py run nq-wiki debdesc --llm-pairs nq-wiki=runs/llm-nq-wiki
    python benchmarks/learning_curve.py run nq-wiki --llm-pairs nq-wiki:v1=DIR1 nq-wiki:v2=DIR2   # ablation groups
    python benchmarks/compare.py --learning-curve nq-wiki --quick     # the same `run`, through compare.py

This file owns the fixed split of a real-query set (``split_set``): the passages that have real queries
(qrels) fall into a train half and a test half by a seeded hash of their id (``SPLIT_RULE``), so the split
never moves; every real query belongs to the half of its passage. Nothing trains or validates on a
test-half query; every row is scored on the test-half queries against the whole corpus.

``corpus SET OUT.jsonl`` writes the train-half passages (BEIR corpus rows ``_id``, ``title``, ``text``) as the
corpus ``projector generate`` makes LLM questions from; ``examples SET OUT.txt --n 6`` writes a seeded handful
of real train-half queries, one a line (style examples for generate's ``--query-examples``); ``OUT.jsonl``
writes the same queries with the passage each finds (``{"query", "passage"}``: few-shot pairs, prompt qa-shots).

``run SETS``: rows at ``--counts`` (COUNTS) for each recipe of RECIPES, all through ``projector.train`` on
pairs folders written with ``projector.formats.pairs``' writers under ``--work`` (kept: a rerun trains only what
changed, keyed on the folder's content and the options):
  real     N real queries of train-half passages (one seeded order: the first VAL_QUERIES validate, row N
           trains on the next N), the reference;
  llm      the first N train pairs of a ``projector generate`` folder made from the ``corpus`` file (its own
           synthetic validation split); ``--llm-pairs SET:LABEL=DIR`` adds row group ``llm:LABEL``;
  cosine   frozen cosine.
A count a source cannot fill is a missing row, said so, never faked. Scoring: ``projector.evaluate``'s
RetrievalEvaluator (NDCG@10; paired bootstrap CI of Δ vs cosine, ``projector.metrics.bootstrap_ci``) on the
shared embedding cache (``projector.embed``'s, as train and compare.py use it); a model's per-query scores are
kept beside it, so a rerun ranks only new rows (nq-wiki: ~1 min a row on a busy 2-core machine).
Outputs: ``--out/learning-curve.json`` (per set and count ``cosine_ndcg10``, ``real_ndcg10``, ``llm_ndcg10``,
per recipe too; the rows, split, commands, targets; sets not rerun are kept) and ``learning-curve.md``
(the targets and the tables: ``benchmarks/learning_curve_report.py``).

SET is a known benchmark name (``benchmarks/build.py``'s ``benchmark_dir``: nq-wiki, debdesc, ...) or a
folder in BEIR layout (corpus.jsonl, queries.jsonl, qrels/test.tsv).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from siblings import load  # noqa: E402  (benchmarks/ is not a package)

from projector.evaluate import baselines as B  # noqa: E402
from projector import cli  # noqa: E402
from projector.evaluate.data import RetrievalData, load_beir  # noqa: E402
from projector.evaluate.evaluators import RetrievalEvaluator  # noqa: E402
from projector.evaluate.rows import Embedder  # noqa: E402
from projector.formats import pairs as P  # noqa: E402
from projector.formats.corpus import Passage, fingerprint, normalise_for_dedup, read_jsonl  # noqa: E402
from projector.errors import DataError  # noqa: E402
from projector.files import write_bytes, write_json, write_text  # noqa: E402

# ---------------------------------------------------------------------------------------------- the rows

COUNTS = (250, 500, 1000, 2000, 4000)  # training pairs per row (a count above what a source has: row missing)
QUICK_COUNTS = (250, 500)              # --quick: these, with the first recipe only
VAL_QUERIES = 500                      # real rows: real train-half queries that validate them (never trained on)

# The recipes: train() options over the defaults. "issue": piece 5's best few-pairs map on real queries
# (benchmarks/results/adapters-faq-perl-debian.md: lowrank r=32 at lr 1e-3, +0.007 NDCG@10); "lr1e-3": that
# table's best row overall (full W at lr 1e-3, +0.010), the control that shows how much is the learning rate.
RECIPES = {
    "issue": {"adapter": "lowrank", "adapter_rank": 32, "lr": 1e-3},
    "today": {},   # the shipped recipe: full W, AdamW lr 1e-4, early stopping, candidate selection on validation
    "lr1e-3": {"lr": 1e-3},
}
DEFAULT_RECIPES = ("issue", "today")   # the first is the primary one: the JSON's top-level figures per count
COMMON = {"sentence_transformers": False}   # every row: no copy of the encoder (~90 MB) per model


@dataclass
class CurveConfig:
    sets: list[str] = field(default_factory=lambda: ["nq-wiki", "debdesc"])  # known names or BEIR folders
    llm_pairs: list[str] = field(default_factory=list)  # SET=DIR or SET:LABEL=DIR, each folder one row group
    counts: list[int] = field(default_factory=lambda: list(COUNTS))
    recipes: list[str] = field(default_factory=lambda: list(DEFAULT_RECIPES))  # keys of RECIPES
    real: bool = True              # the real-query reference rows (False: LLM rows and cosine only)
    val_queries: int = VAL_QUERIES
    out: str = str(REPO / "benchmarks" / "results")    # learning-curve.md + learning-curve.json
    work: str = str(REPO / "runs" / "learning-curve")  # training folders and models, kept: a rerun reuses them
    threads: int = 1               # torch threads per training run (1 is fastest on a busy machine)
    bootstrap: int = 1000          # paired bootstrap resamples of Δ vs cosine
    seed: int = 0                  # the real rows' samples, train()'s seed, the bootstrap
    train_extra: dict = field(default_factory=dict)  # more train() options for every row (tests: fewer epochs)
    llm_train_half_only: bool = False  # an LLM folder made from the whole corpus: keep its train-half part only
    llm_real_validation: bool = False  # also every LLM folder validated on the real rows' queries ("LABEL+realval")
    llm_plus_real: bool = False    # also each real row with every LLM folder's train pairs added ("real+LABEL")

# ---------------------------------------------------------------------------------------------- the split

SPLIT_SEED = 0          # fixed once: changing it moves every passage, and every committed figure with it
SPLIT_SALT = "learning-curve"
TRAIN_SHARE = 0.5       # share of the judged passages in the train half
EXAMPLES_SEED = 1       # which train-half queries `examples` picks
SPLIT_RULE = ("a passage with a real query is in the train half iff int(sha256('learning-curve:SEED:' + KEY)"
              ".hexdigest()[:16], 16) < 0.5 * 2**64, KEY = the first corpus _id (corpus.jsonl order) among the "
              "passages whose text is the same under projector.formats.corpus.normalise_for_dedup (near-duplicates share "
              "a half); a real query belongs to the half of its relevant passages (both halves: dropped); a "
              "train-half query whose text is also a test-half query's is dropped")


@dataclass
class HalfSplit:
    """A set's fixed split; rows index the set's ``RetrievalData`` (corpus rows, query rows)."""

    seed: int
    train_passages: list[int]   # corpus rows with a real query, train half
    test_passages: list[int]
    train_queries: list[int]    # query rows whose relevant passages are all train-half
    test_queries: list[int]     # query rows whose relevant passages are all test-half: the only ones scored
    dropped_queries: int        # relevant passages in both halves, or the text of a test query

    def summary(self) -> dict:
        return {"rule": SPLIT_RULE.replace("SEED", str(self.seed)), "seed": self.seed,
                "passages": {"train": len(self.train_passages), "test": len(self.test_passages)},
                "queries": {"train": len(self.train_queries), "test": len(self.test_queries),
                            "dropped": self.dropped_queries}}


def in_train_half(key: str, seed: int = SPLIT_SEED) -> bool:
    h = hashlib.sha256(f"{SPLIT_SALT}:{seed}:{key}".encode()).hexdigest()
    return int(h[:16], 16) < TRAIN_SHARE * 2**64


def split_set(data: RetrievalData, seed: int = SPLIT_SEED) -> HalfSplit:
    """The split of SPLIT_RULE: a function of the corpus ids, texts and qrels only."""
    first: dict[str, str] = {}
    key = [first.setdefault(normalise_for_dedup(text), cid) for cid, text in zip(data.corpus_ids, data.corpus)]
    judged = sorted(set().union(*data.qrels))
    train_side = {r: in_train_half(key[r], seed) for r in judged}
    train_q, test_q, dropped = [], [], 0
    for i, rel in enumerate(data.qrels):
        sides = {train_side[r] for r in rel}
        if sides == {True}:
            train_q.append(i)
        elif sides == {False}:
            test_q.append(i)
        else:
            dropped += 1
    test_texts = {data.queries[i] for i in test_q}
    kept = [i for i in train_q if data.queries[i] not in test_texts]
    return HalfSplit(seed, [r for r in judged if train_side[r]], [r for r in judged if not train_side[r]],
                     kept, test_q, dropped + len(train_q) - len(kept))


def test_half(data: RetrievalData, split: HalfSplit) -> RetrievalData:
    """The scored data: the test-half real queries, ranked against the whole corpus."""
    return RetrievalData(f"{data.name}-test-half", [data.queries[i] for i in split.test_queries], data.corpus_ids,
                           data.corpus, [data.qrels[i] for i in split.test_queries])


# ---------------------------------------------------------------------------------------------- sets


def _build_module():
    return load("build")


def _report_module():
    return load("learning_curve_report")


def set_folder(name: str) -> Path:
    """A BEIR folder given as a path, else the known benchmark of that name."""
    if (Path(name) / "corpus.jsonl").is_file():
        return Path(name)
    build = _build_module()
    try:
        return build.benchmark_dir(name)
    except ValueError as e:
        raise DataError(f"{name}: not a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv) and {e}") from None
    except build.BuildError as e:
        raise DataError(f"{name}: {e}") from None


def load_set(name: str) -> tuple[Path, RetrievalData, HalfSplit]:
    folder = set_folder(name)
    data = load_beir(str(folder))
    return folder, data, split_set(data)


# ---------------------------------------------------------------------------------------------- corpus, examples


def write_corpus(name: str, out: Path) -> dict:
    """OUT.jsonl: the train-half passages as BEIR corpus rows, in corpus order (input of ``projector generate``)."""
    folder, data, split = load_set(name)
    keep = {data.corpus_ids[r] for r in split.train_passages}
    rows = [row for _, row in read_jsonl(folder / "corpus.jsonl", error=DataError) if str(row["_id"]) in keep]
    write_text(out, "".join(json.dumps({"_id": str(r["_id"]), "title": r.get("title", ""), "text": r["text"]},
                                       ensure_ascii=False) + "\n" for r in rows))
    return {"written": len(rows), **split.summary()}


def example_queries(data: RetrievalData, split: HalfSplit, n: int, seed: int = EXAMPLES_SEED) -> list[tuple[str, str]]:
    """n real train-half queries, a seeded sample (one line each: inner line breaks become spaces), each with the
    text of its first relevant passage (corpus order)."""
    pick = np.random.default_rng(seed).permutation(len(split.train_queries))[:n]
    queries = [split.train_queries[i] for i in pick]
    return [(" ".join(data.queries[q].split()), data.corpus[min(data.qrels[q])]) for q in queries]


def write_examples(name: str, out: Path, n: int) -> list[str]:
    """OUT: the examples, one query a line, or for OUT.jsonl one ``{"query", "passage"}`` object a line."""
    _, data, split = load_set(name)
    if n < 1:
        raise DataError(f"--n must be >= 1, got {n}")
    examples = example_queries(data, split, n)
    if out.suffix == ".jsonl":
        write_text(out, "".join(json.dumps({"query": q, "passage": p}, ensure_ascii=False) + "\n" for q, p in examples))
    else:
        write_text(out, "".join(q + "\n" for q, _ in examples))
    return [q for q, _ in examples]


def _rows_hash(passages: list[Passage], rows: list[dict]) -> str:
    """Content key of a training folder: its passages and its (query, passage, split[, judged negatives]) rows."""
    body = json.dumps([fingerprint(passages), [(r["query"], r["passage_id"], r["split"], *(
        [r["negatives"]] if "negatives" in r else [])) for r in rows]])
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _write_folder(out: Path, passages: list[Passage], rows: list[dict], manifest: dict) -> str:
    """A pairs folder through projector.formats.pairs' own writers; returns its content key."""
    out.mkdir(parents=True, exist_ok=True)
    P.write_passages(passages, out / P.PASSAGES)
    P.write_dataset(rows, out, "qa")
    splits = {s: sum(r["split"] == s for r in rows) for s in P.SPLITS}
    write_json(out / P.MANIFEST, {"format": P.FORMAT, "format_version": P.FORMAT_VERSION, "task": "qa",
                                  "corpus_fingerprint": fingerprint(passages), **manifest,
                                  "counts": {**manifest.get("counts", {}), "splits": splits}})
    return _rows_hash(passages, rows)


def train_half_passages(data: RetrievalData, split: HalfSplit) -> list[Passage]:
    """The train-half passages as a pairs folder's corpus (ids are the set's _id; texts as evaluate embeds them)."""
    return [Passage(passage_id=data.corpus_ids[r], doc_id=data.corpus_ids[r], text=data.corpus[r])
            for r in split.train_passages]


def real_order(split: HalfSplit, val_queries: int, seed: int) -> tuple[list[int], list[int]]:
    """(validation query rows, training pool in sample order): one seeded permutation of the train-half
    queries; the first ``val_queries`` validate every real row, row N trains on ``pool[:N]`` (nested samples)."""
    order = [split.train_queries[i] for i in np.random.default_rng(seed).permutation(len(split.train_queries))]
    return order[:val_queries], order[val_queries:]


def write_real_pairs(out: Path, data: RetrievalData, passages: list[Passage], train_rows: list[int],
                     val_rows: list[int], extra: list[dict] = (), manifest: dict | None = None) -> str:
    """A pairs folder of real queries: train = ``train_rows`` (query rows of data) and the ``extra`` train rows,
    validation = ``val_rows``."""
    rows = (real_query_rows(data, passages, train_rows, "train") + list(extra)
            + real_query_rows(data, passages, val_rows, "validation"))
    return _write_folder(out, passages, rows, {"corpus": f"{data.name} train half",
                                               "source": "real queries of train-half passages (learning_curve.py)",
                                               **(manifest or {})})


def real_query_rows(data: RetrievalData, passages: list[Passage], query_rows: list[int], split: str,
                    by_doc: bool = False) -> list[dict]:
    """qa rows of real queries (rows of ``data``) onto ``passages``, one per relevant passage. ``by_doc``: the
    passages are a generate folder's (ids DOC#i; the set's passage is the first of its document), and a query
    whose passage is not there is left out."""
    index = {}
    for p in passages:
        index.setdefault(p.doc_id if by_doc else p.passage_id, p)
    rows = []
    for i in query_rows:
        rel = [index.get(data.corpus_ids[r]) for r in sorted(data.qrels[i])]
        if by_doc and not all(rel):
            continue
        for p in rel:
            rows += P.qa_rows(p, [data.queries[i]], split)
    return rows


def llm_rows(src: Path, train_ids: set[str], test_texts: set[str],
             train_half_only: bool = False) -> tuple[dict, list[Passage], dict]:
    """An LLM pairs folder's manifest, passages and rows {train, validation}, checked against the split: its
    passages must all be train-half (refused otherwise; with ``train_half_only``, a folder made from the whole
    corpus keeps only its train-half passages and their rows); rows whose query is a test-half query's text are
    dropped."""
    P.load_pairs(src)  # every check of the format
    manifest = P.read_manifest(src)
    passages = P.read_passages(src / P.PASSAGES)
    if train_half_only:
        passages = [p for p in passages if p.doc_id in train_ids]
    outside = sorted({p.doc_id for p in passages} - train_ids)
    if outside:
        raise DataError(f"{src}: {len(outside)} passages are not train-half passages of this set (e.g. "
                        f"{outside[:3]}); generate from the file `learning_curve.py corpus SET OUT.jsonl` writes")
    rows, dropped = {}, 0
    for split in ("train", "validation"):
        kept = [{**r, "split": split} for r in P.load_split(src, split)
                if not train_half_only or r["doc_id"] in train_ids]
        rows[split] = [r for r in kept if r["query"] not in test_texts]
        dropped += len(kept) - len(rows[split])
    return manifest, passages, {"rows": rows, "dropped_test_texts": dropped}


# ---------------------------------------------------------------------------------------------- one row


def training_code() -> str:
    """Content key of the modules that decide what a row trains and exports: a finished model is reused only
    while they are unchanged (an edited early stopping or selection rule retrains every row)."""
    import projector

    h = hashlib.sha256()
    for name in ("train", "fit", "candidates", "projection", "pairs"):
        h.update((Path(projector.__file__).parent / f"{name}.py").read_bytes())
    return h.hexdigest()[:16]


def train_row(pairs_dir: Path, model_dir: Path, key: str, recipe: str, cfg: "CurveConfig") -> dict:
    """projector.train on a folder with a recipe; a finished model of the same content and options is reused."""
    from projector.train.stage import train

    options = {**COMMON, **RECIPES[recipe], **cfg.train_extra, "threads": cfg.threads, "seed": cfg.seed}
    spec = {"pairs": key, "options": options, "row_format": 2, "code": training_code()}
    record = model_dir / "learning_curve.json"
    if (model_dir / "projector.json").is_file() and record.is_file():
        done = json.loads(record.read_text(encoding="utf-8"))
        if done.get("spec") == spec:
            return {**done["row"], "reused": True}
    started = time.time()
    s = train(pairs=str(pairs_dir), out=str(model_dir), **options)
    val = s["validation"]
    row = {"model": str(model_dir), "selected": s["selected"], "epochs": s["epochs_run"],
           "train_pairs": s["train_pairs"], "val_ndcg10_selected": round(val[s["selected"]]["val_ndcg@10"], 4),
           "val_ndcg10_trained": round(val["trained"]["val_ndcg@10"], 4),
           "val_ndcg10_cosine": round(val["cosine"]["val_ndcg@10"], 4), "train_s": round(time.time() - started, 1)}
    write_json(record, {"spec": spec, "row": row})
    return row


# ---------------------------------------------------------------------------------------------- one set


def set_key(name: str) -> str:
    """The set's name in results: a known name as given, a folder by its own name."""
    return Path(name).name if (Path(name) / "corpus.jsonl").is_file() else name


def recorded(path) -> str:
    """A folder as results record it: relative to the repository, else only its name (no machine paths)."""
    p = Path(path).resolve()
    return p.relative_to(REPO).as_posix() if p.is_relative_to(REPO) else f"<outside the repository>/{p.name}"


def llm_specs(cfg: CurveConfig) -> dict[str, list[tuple[str, Path]]]:
    """--llm-pairs SET[:LABEL]=DIR -> {set: [(row label, folder)]}; the label is "llm" or "llm:LABEL"."""
    out: dict[str, list[tuple[str, Path]]] = {}
    keys = {set_key(n) for n in cfg.sets}
    for spec in cfg.llm_pairs:
        head, sep, folder = spec.partition("=")
        name, _, tag = head.partition(":")
        if not sep or not name or not folder:
            raise DataError(f"--llm-pairs {spec!r}: expected SET=DIR or SET:LABEL=DIR")
        if name not in keys:
            raise DataError(f"--llm-pairs {spec!r}: set {name!r} is not run (sets: {sorted(keys)})")
        label = f"llm:{tag}" if tag else "llm"
        if label in [x for x, _ in out.get(name, [])]:
            raise DataError(f"--llm-pairs {spec!r}: label {label!r} given twice for {name}; name each folder")
        out.setdefault(name, []).append((label, Path(folder)))
    return out


def _check_clean(folder: Path, test_texts: set[str], train_ids: set[str]) -> None:
    """The folder as train reads it: no test-half query, no passage outside the train half."""
    pairs = P.load_pairs(folder)
    leaked = {q for s in ("train", "validation") for q in pairs.splits[s]["query"]} & test_texts
    outside = {x.doc_id for x in P.read_passages(folder / P.PASSAGES)} - train_ids  # LLM folders: ids DOC#0
    if leaked or outside:
        raise RuntimeError(f"{folder}: {len(leaked)} test-half queries, {len(outside)} test-half passages")


def plan_rows(key: str, data, split: HalfSplit, cfg: CurveConfig, llm: list[tuple[str, Path]]) -> tuple[list, dict]:
    """Write every training folder; returns ([(label, source, count, folder | None, content key, missing)],
    {label: what the LLM folder is})."""
    work = Path(cfg.work) / key / "pairs"
    passages = train_half_passages(data, split)
    train_ids, test_texts = {p.passage_id for p in passages}, {data.queries[i] for i in split.test_queries}
    plans, folders = [], {}
    if cfg.real:
        plans += real_plans(work, "real", "real", [], data, split, passages, cfg, {})
    val_rows = real_order(split, cfg.val_queries, cfg.seed)[0]
    for label, src in [*llm, *((f"{lb}+realval", src) for lb, src in llm if cfg.llm_real_validation)]:
        manifest, lpass, got = llm_rows(src, train_ids, test_texts, cfg.llm_train_half_only)
        tr, va = got["rows"]["train"], got["rows"]["validation"]
        if label.endswith("+realval"):  # the training signal alone: validated like the real rows, on real queries
            va = real_query_rows(data, lpass, val_rows, "validation", by_doc=True)
        folders[label] = {"path": recorded(src), "train_pairs": len(tr), "validation_pairs": len(va),
                          "dropped_test_texts": got["dropped_test_texts"], "train_half_only": cfg.llm_train_half_only,
                          **{k: manifest.get(k) for k in ("model", "prompt_version", "settings", "counts")},
                          **({"roundtrip_filter": manifest["roundtrip_filter"]} if "roundtrip_filter" in manifest
                             else {})}  # benchmarks/roundtrip_filter.py
        if "teacher" in manifest:  # a projector teach folder: the questions' recipe is its source's
            folders[label].update({k: manifest["source"].get(k) for k in ("prompt_version", "settings")},
                                  teacher_prompt=manifest["prompt_version"], teacher=manifest["teacher"],
                                  cost=manifest["cost"])
        for n in cfg.counts:
            if n > len(tr):
                plans.append((label, "llm", n, None, None, f"the folder has {len(tr)} train pairs"))
                continue
            folder = work / f"{label.replace(':', '-')}-{n}"
            meta = {**{k: v for k, v in manifest.items() if k not in ("counts", "format", "format_version")},
                    "learning_curve": {"source": recorded(src), "first_train_rows": n}}
            plans.append((label, "llm", n, folder, _write_folder(folder, lpass, tr[:n] + va, meta), None))
            _check_clean(folder, test_texts, train_ids)
        if cfg.llm_plus_real and cfg.real and not label.endswith("+realval"):
            # Row group real+LABEL: the real row N's queries plus every LLM train pair, validated like the real
            # rows. The LLM rows move onto the train-half passages by their document (the folders are made with
            # one passage a document), so that both kinds of query point at the same passage texts.
            by_id = {p.passage_id: p for p in passages}
            extra = [row for r in tr for row in P.qa_rows(by_id[r["doc_id"]], [r["query"]], "train")]
            plans += real_plans(work, f"real+{label}", "real+llm", extra, data, split, passages, cfg,
                                {"source": f"real queries of train-half passages plus the {len(extra)} LLM train "
                                           f"pairs of {recorded(src)}"})
    return plans, folders


def real_plans(work: Path, label: str, source: str, extra: list[dict], data, split: HalfSplit,
               passages: list[Passage], cfg: CurveConfig, manifest: dict) -> list:
    """The plans of a row group trained on the real row N's queries (plus ``extra`` train rows) at each count,
    validated on the real validation queries; each folder checked against the test half."""
    val, pool = real_order(split, cfg.val_queries, cfg.seed)
    test_texts = {data.queries[i] for i in split.test_queries}
    plans = []
    for n in cfg.counts:
        if n > len(pool):
            plans.append((label, source, n, None, None, f"{len(pool)} real train-half queries besides the "
                                                        f"{len(val)} that validate"))
            continue
        folder = work / f"{label.replace(':', '-')}-{n}"
        content = write_real_pairs(folder, data, passages, pool[:n], val, extra, manifest)
        _check_clean(folder, test_texts, {p.passage_id for p in passages})
        plans.append((label, source, n, folder, content, None))
    return plans


def run_set(name: str, cfg: CurveConfig, llm: list[tuple[str, Path]]) -> dict:
    """Every row of one set: train, then score each against frozen cosine on the test half."""
    started = time.time()
    key = set_key(name)
    _, data, split = load_set(name)
    test = test_half(data, split)
    print(f"[{key}] split: {split.summary()['passages']} passages, {split.summary()['queries']} queries", flush=True)
    plans, folders = plan_rows(key, data, split, cfg, llm)
    rows = []
    for label, source, n, folder, content, missing in plans:
        for recipe in cfg.recipes:
            row = {"name": f"{label} {recipe} n={n}", "label": label, "source": source, "recipe": recipe, "count": n}
            if missing:
                row["missing"] = missing
            else:
                model = Path(cfg.work) / key / "models" / f"{label.replace(':', '-')}-{recipe}-{n}"
                row |= train_row(folder, model, content, recipe, cfg)
                print(f"[{key}] {row['name']}: exported {row['selected']}, val NDCG@10 {row['val_ndcg10_selected']} "
                      f"(trained {row['val_ndcg10_trained']}, cosine {row['val_ndcg10_cosine']}), {row['train_s']}s"
                      f"{' (reused)' if row.get('reused') else ''}", flush=True)
            rows.append(row)
    by, cos = score_rows(test, [r for r in rows if "model" in r], cfg)
    for r in rows:
        if r["name"] in by:
            x = by[r["name"]]
            r |= {"ndcg10": round(x["ndcg@10"], 4), "delta": round(x["ndcg@10"] - cos, 4), "delta_ci95": x["ci95"],
                  "gain_pct": round(100 * (x["ndcg@10"] / cos - 1), 2), "mrr10": round(x["mrr@10"], 4),
                  "recall10": round(x["recall@10"], 4), "model": recorded(r["model"])}
    real_val, real_pool = real_order(split, cfg.val_queries, cfg.seed)
    return {"set": key, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "data": {"test_queries": len(test.queries), "corpus": len(data.corpus),
                     "train_half_passages": len(split.train_passages)},
            "split": split.summary(),
            "validation": {"real": f"{len(real_val)} real train-half queries (the first of the seeded order; the "
                                   f"next {len(real_pool)} are the training pool, row N trains on the first N)",
                           "llm": "the LLM folder's own synthetic validation split"},
            "recipes": {r: {**COMMON, **RECIPES[r], **cfg.train_extra} for r in cfg.recipes}, "counts": cfg.counts,
            "llm_folders": folders, "cosine_ndcg10": round(cos, 4), "rows": rows,
            "curve": curve(rows, cfg.counts, cfg.recipes, round(cos, 4), list(folders)),
            "command": command(key, cfg, llm), "wall_s": round(time.time() - started, 1)}


def score_rows(test: RetrievalData, rows: list[dict], cfg: CurveConfig) -> tuple[dict, float]:
    """Each model's mean NDCG@10, MRR@10, Recall@10 on the test half and the paired bootstrap 95% CI of its
    NDCG@10 difference to frozen cosine ({name: {...}}, cosine's NDCG@10): ``projector.evaluate``'s
    RetrievalEvaluator and ``projector.metrics.bootstrap_ci``, as evaluate_retrieval computes them."""
    import projector
    from projector.embed.encoder import encoder_identity
    from projector.metrics import bootstrap_ci

    emb = Embedder(None, 64)
    ev = RetrievalEvaluator(emb(test.queries, None), emb(test.corpus, None), test.qrels)
    key = hashlib.sha256(json.dumps([encoder_identity(None), test.queries, test.corpus_ids,
                                     [sorted(r) for r in test.qrels]]).encode()).hexdigest()[:16]
    base = ev.per_query(B.Cosine().fit(ev.corpus_emb))
    out = {}
    for r in rows:
        pq = per_query_cached(ev, projector.load(r["model"]), Path(r["model"]), key)
        diff = pq["ndcg@10"] - base["ndcg@10"]
        out[r["name"]] = {**{m: float(pq[m].mean()) for m in ("ndcg@10", "mrr@10", "recall@10")},
                          "ci95": [round(v, 4) for v in bootstrap_ci(diff, cfg.bootstrap, cfg.seed)]}
    return out, float(base["ndcg@10"].mean())


def per_query_cached(ev: RetrievalEvaluator, scorer, model_dir: Path, test_key: str) -> dict[str, np.ndarray]:
    """``ev.per_query(scorer)``, kept beside the model (MODEL/test-half.npz), keyed on its weights and the test
    set: ranking ~9k queries over 14k passages takes a minute a row on a busy CPU, and reruns add rows."""
    key = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()[:16] + test_key
    path, meta = model_dir / "test-half.npz", model_dir / "test-half.json"
    if path.is_file() and meta.is_file() and json.loads(meta.read_text(encoding="utf-8")).get("key") == key:
        with np.load(path, allow_pickle=False) as z:
            return {m: z[m] for m in z.files}
    pq = ev.per_query(scorer)
    buf = io.BytesIO()
    np.savez(buf, **pq)
    write_bytes(path, buf.getvalue())
    write_json(meta, {"key": key})
    return pq


def curve(rows: list[dict], counts, recipes, cos: float, labels: list[str]) -> dict:
    """Per count: cosine_ndcg10, real_ndcg10 and llm_ndcg10 (the primary recipe; None = missing), per recipe too
    (with ``real_plus_llm_ndcg10_by_label``: the real+LABEL rows, where there are)."""
    primary_llm = "llm" if "llm" in labels else (labels[0] if labels else None)
    mixed = sorted({r["label"] for r in rows if r["source"] == "real+llm"})
    get = lambda label, recipe, n: next((r.get("ndcg10") for r in rows
                                         if (r["label"], r["recipe"], r["count"]) == (label, recipe, n)), None)
    out = {}
    for n in counts:
        per = {rc: {"real_ndcg10": get("real", rc, n), "llm_ndcg10": get(primary_llm, rc, n),
                    "llm_ndcg10_by_label": {lb: get(lb, rc, n) for lb in labels},
                    **({"real_plus_llm_ndcg10_by_label": {lb: get(lb, rc, n) for lb in mixed}} if mixed else {})}
               for rc in recipes}
        out[str(n)] = {"cosine_ndcg10": cos, "real_ndcg10": per[recipes[0]]["real_ndcg10"],
                       "llm_ndcg10": per[recipes[0]]["llm_ndcg10"], "primary_recipe": recipes[0],
                       "llm_label": primary_llm, "recipes": per}
    return out


def command(key: str, cfg: CurveConfig, llm: list[tuple[str, Path]]) -> dict:
    """The commands that make this set's rows (folders relative to the repository)."""
    run = ["python benchmarks/learning_curve.py run", key, "--counts", ",".join(map(str, cfg.counts)),
           "--recipes", ",".join(cfg.recipes), "--val-queries", str(cfg.val_queries), "--seed", str(cfg.seed)]
    run += ["--llm-pairs"] + [f"{key}{label[3:]}={recorded(src)}" for label, src in llm] if llm else []
    run += [] if cfg.real else ["--no-real"]
    run += ["--llm-train-half-only"] if llm and cfg.llm_train_half_only else []
    run += ["--llm-real-validation"] if llm and cfg.llm_real_validation else []
    run += ["--llm-plus-real"] if llm and cfg.real and cfg.llm_plus_real else []
    return {"run": " ".join(run),
            "llm corpus": f"python benchmarks/learning_curve.py corpus {key} runs/learning-curve/{key}-train.jsonl",
            "style examples": f"python benchmarks/learning_curve.py examples {key} "
                              f"runs/learning-curve/{key}-examples.txt --n 6",
            "generate (the LLM folder's manifest records what was run)":
                f"python -m projector.generate --corpus runs/learning-curve/{key}-train.jsonl --id-field _id "
                f"--chunk-tokens 4096 --chunk-overlap 0 --max-passages M --out DIR"}


# ---------------------------------------------------------------------------------------------- output


def write(sets: dict, out: Path) -> dict:
    """Merge into OUT/learning-curve.json (sets not rerun are kept as they were), rewrite the .md."""
    path = out / "learning-curve.json"
    old = json.loads(path.read_text(encoding="utf-8"))["sets"] if path.is_file() else {}
    merged = {**old, **sets}
    report = _report_module()
    res = {"issue": 11, "piece": 6, "split_rule": SPLIT_RULE.replace("SEED", str(SPLIT_SEED)),
           "split_seed": SPLIT_SEED, "sets": merged, "targets": report.targets(merged)}
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, res)
    write_text(out / "learning-curve.md", report.markdown(res))
    return res


def run(cfg: CurveConfig) -> dict:
    bad = [r for r in cfg.recipes if r not in RECIPES]
    if bad or not cfg.recipes:
        raise DataError(f"--recipes: unknown {bad}; choose from {list(RECIPES)}")
    if not cfg.counts or min(cfg.counts) < 1:
        raise DataError(f"--counts must be positive pair counts, got {cfg.counts}")
    llm = llm_specs(cfg)
    res = None
    for name in cfg.sets:
        res = write({set_key(name): run_set(name, cfg, llm.get(set_key(name), []))}, Path(cfg.out))
    print(_report_module().markdown(res), flush=True)
    return res


# ---------------------------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/learning_curve.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("corpus", help="the train-half passages as a corpus file for projector generate")
    c.add_argument("set")
    c.add_argument("out", type=Path)
    x = sub.add_parser("examples", help="a seeded handful of real train-half queries, one a line")
    x.add_argument("set")
    x.add_argument("out", type=Path)
    x.add_argument("--n", type=int, default=6)
    d = CurveConfig()
    r = sub.add_parser("run", help="train and score every row; write OUT/learning-curve.{md,json}")
    r.add_argument("sets", nargs="*", default=d.sets)
    r.add_argument("--llm-pairs", nargs="+", action="extend", default=[], metavar="SET[:LABEL]=DIR",
                   help="a projector generate folder made from the train-half corpus; several: one row group each")
    r.add_argument("--counts", default=",".join(map(str, d.counts)), help="training pairs per row, comma-separated")
    r.add_argument("--recipes", default=",".join(d.recipes), help=f"comma-separated, of {list(RECIPES)}")
    r.add_argument("--quick", action="store_true", help=f"counts {QUICK_COUNTS}, the first recipe only")
    r.add_argument("--no-real", action="store_true", help="skip the real-query reference rows")
    r.add_argument("--llm-train-half-only", action="store_true",
                   help="an --llm-pairs folder made from the whole corpus (today's committed pairs): use only its "
                        "train-half passages and their questions, instead of refusing it")
    r.add_argument("--llm-plus-real", action="store_true",
                   help="also each real row with every train pair of each LLM folder added (row group real+LABEL), "
                        "validated like the real rows: what LLM questions add to a user's own few queries")
    r.add_argument("--llm-real-validation", action="store_true",
                   help="also run every LLM folder validated on the real rows' validation queries instead of its "
                        "own synthetic split (row group LABEL+realval): the training signal without the noise of "
                        "a few dozen synthetic validation queries")
    for name in ("val_queries", "threads", "bootstrap", "seed"):
        r.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    r.add_argument("--out", default=d.out)
    r.add_argument("--work", default=d.work)

    def go(argv):
        a = p.parse_args(argv)
        if a.command in ("corpus", "examples"):
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)  # the README's runs/learning-curve/ on a fresh clone
        if a.command == "corpus":
            s = write_corpus(a.set, a.out)
            print(f"{a.out}: {s['written']} train-half passages of {a.set} (test half: {s['passages']['test']} "
                  f"passages, {s['queries']['test']} real queries, never trained on)")
        elif a.command == "examples":
            for q in write_examples(a.set, a.out, a.n):
                print(q)
            print(f"{a.out}: {a.n} real train-half queries of {a.set}")
        else:
            try:
                counts = [int(n) for n in a.counts.split(",")]
            except ValueError:
                raise DataError(f"--counts {a.counts!r}: expected comma-separated integers") from None
            recipes = [x.strip() for x in a.recipes.split(",") if x.strip()]
            if a.quick:
                counts, recipes = list(QUICK_COUNTS), recipes[:1]
            run(CurveConfig(sets=a.sets, llm_pairs=a.llm_pairs, counts=counts, recipes=recipes, real=not a.no_real,
                            val_queries=a.val_queries, out=a.out, work=a.work, threads=a.threads,
                            bootstrap=a.bootstrap, seed=a.seed, llm_train_half_only=a.llm_train_half_only,
                            llm_real_validation=a.llm_real_validation, llm_plus_real=a.llm_plus_real))

    return cli.run(go, "learning-curve", argv)


if __name__ == "__main__":
    raise SystemExit(main())
