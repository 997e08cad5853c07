#!/usr/bin/env python3
"""Rebuild the real-query retrieval benchmarks from their registry packages.

    python benchmarks/build.py nq-wiki --out benchmarks/data/nq-wiki
    python benchmarks/build.py faq-perl-debian --out benchmarks/data/faq-perl-debian
    python benchmarks/build.py --check      # rebuild both in a temp dir, compare with ../shared/benchmarks

nq-wiki comes from the `bigbench==1.0.0` source distribution on PyPI (`pip download --no-deps`; it is
never installed: only one task.json is read out of the archive). faq-perl-debian comes from Debian's
`perl-doc` and `debian-faq` packages (`apt-get download`, unpacked with `dpkg-deb -x` into a temp dir;
nothing is installed). Output is BEIR's layout: corpus.jsonl, queries.jsonl, qrels/test.tsv, meta.json,
written to a temp folder beside the target and renamed into place.

Other code should call `benchmark_dir(name)`: the shared copy (../shared/benchmarks/NAME beside the
repo) when there is one, else benchmarks/data/NAME, built on first use.

debdesc (a Debian package's one-line synopsis -> its long description; 6,000 packages) has no builder
here yet: the copy was drawn as a seeded sample of Debian main's package index whose seed and rules are
not recorded, so no public source rebuilds it. `benchmark_dir("debdesc")` returns the shared copy, or
fails saying it is missing (`SHARED_ONLY`).

How each package is fetched and read: `benchmarks/build_sources.py`. Standard library only, so it runs before
the project is installed.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from siblings import load  # noqa: E402  (benchmarks/ is not a package)

load("build_sources")  # fetching and parsing the registry packages, as benchmarks_build_sources
from benchmarks_build_sources import (BuildError, faq_to_beir, fetch_debian_sources, fetch_task_json,  # noqa: E402
                                      parse_debian_faq, parse_nq_task, parse_pod)

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT.parent / "shared" / "benchmarks"  # the copies kept beside the repo
DATA_DIR = REPO_ROOT / "benchmarks" / "data"  # where rebuilt sets go (gitignored)

NAMES = ("nq-wiki", "faq-perl-debian")  # rebuilt from registry packages (BUILDERS)
SHARED_ONLY = ("debdesc",)  # known sets without a builder: found only as the shared copy
KNOWN = NAMES + SHARED_ONLY

META = {
    "nq-wiki": {
        "source": "BIG-bench task contextual_parametric_knowledge_conflicts (bigbench 1.0.0 sdist on PyPI): "
        "real Natural Questions queries with Wikipedia passages; the task's authors substituted one answer "
        "entity per passage; it is masked as ___ here, and identical passages merged",
        "licence": "Apache-2.0 (BIG-bench); passages from Wikipedia, CC BY-SA",
    },
    "faq-perl-debian": {
        "source": "perlfaq1-9 (Debian package perl-doc) and the Debian FAQ (Debian package debian-faq): "
        "human-written questions and their answers",
        "licence": "perlfaq: Perl's Artistic/GPL; Debian FAQ: GPL",
    },
}


# ----------------------------------------------------------------------------------------- writing


def write_beir(out: Path, name: str, corpus: list[dict], queries: list[dict], qrels: list[tuple[str, str]],
               extra_meta: dict | None = None) -> Path:
    """Write a BEIR folder atomically: into a temp folder beside `out`, then renamed onto it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        with open(tmp / "corpus.jsonl", "w", encoding="utf-8") as f:
            for d in corpus:
                f.write(json.dumps({"_id": d["_id"], "title": d.get("title", ""), "text": d["text"]},
                                   ensure_ascii=False) + "\n")
        with open(tmp / "queries.jsonl", "w", encoding="utf-8") as f:
            for q in queries:
                f.write(json.dumps({"_id": q["_id"], "text": q["text"]}, ensure_ascii=False) + "\n")
        (tmp / "qrels").mkdir()
        with open(tmp / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for qid, did in qrels:
                f.write(f"{qid}\t{did}\t1\n")
        meta = {"name": name, **META.get(name, {}), "queries": len(queries), "documents": len(corpus)}
        meta.update(extra_meta or {})
        with open(tmp / "meta.json", "w", encoding="utf-8") as f:
            json.dump(meta, f, ensure_ascii=False, indent=1)
        os.chmod(tmp, 0o755)
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.rename(out, old)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------------------- building


def build_nq_wiki(out: Path, task_json: Path | None = None, downloads: Path | None = None) -> Path:
    """Build nq-wiki into `out` from task.json (given, or read out of the downloaded sdist)."""
    if task_json is not None:
        raw, origin = Path(task_json).read_bytes(), Path(task_json).name
    else:
        with tempfile.TemporaryDirectory(prefix="nq-wiki-") as tmp:
            raw, origin = fetch_task_json(Path(downloads) if downloads else Path(tmp))
    try:
        task = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BuildError(f"task.json is not valid JSON ({e})") from None
    corpus, queries, qrels = parse_nq_task(task)
    return write_beir(out, "nq-wiki", corpus, queries, qrels, {"built_from": origin})


def build_faq_perl_debian(out: Path, pod_files: list[Path] | None = None, faq_txt: Path | None = None,
                          downloads: Path | None = None) -> Path:
    """Build faq-perl-debian into `out` from perlfaq1-9.pod and the Debian FAQ text (.txt or .txt.gz)."""
    def from_files(pods: list[Path], faq: Path, origin: list[str]) -> Path:
        sections: list[tuple[str, str]] = []
        for p in pods:
            sections += parse_pod(Path(p).read_text(encoding="utf-8"))
        faq = Path(faq)
        opener = gzip.open if faq.suffix == ".gz" else open
        with opener(faq, "rt", encoding="utf-8") as f:
            sections += parse_debian_faq(f.read())
        corpus, queries, qrels = faq_to_beir(sections)
        return write_beir(out, "faq-perl-debian", corpus, queries, qrels, {"built_from": ", ".join(origin)})

    if pod_files is not None and faq_txt is not None:
        return from_files(list(pod_files), Path(faq_txt), [Path(p).name for p in pod_files] + [Path(faq_txt).name])
    if pod_files is not None or faq_txt is not None:
        raise BuildError("give both the perlfaq .pod files and the Debian FAQ text, or neither")
    with tempfile.TemporaryDirectory(prefix="faq-perl-debian-") as tmp:
        pods, faq, debs = fetch_debian_sources(Path(downloads) if downloads else Path(tmp))
        return from_files(pods, faq, debs)


BUILDERS = {"nq-wiki": build_nq_wiki, "faq-perl-debian": build_faq_perl_debian}


def benchmark_dir(name: str) -> Path:
    """The folder of benchmark `name` in BEIR layout.

    ../shared/benchmarks/NAME (beside the repo) when it is there, else benchmarks/data/NAME,
    which is built from the registry packages first if it is missing (minutes; needs pip, and for
    faq-perl-debian apt-get and dpkg-deb). A SHARED_ONLY set is the shared copy or a BuildError.
    """
    if name not in BUILDERS and name not in SHARED_ONLY:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(KNOWN)}")
    shared = Path(SHARED_DIR) / name
    if (shared / "corpus.jsonl").is_file():
        return shared
    if name in SHARED_ONLY:
        raise BuildError(f"{name} has no builder from public sources; it needs the ready copy "
                         f"{shared} (a folder beside the repository)")
    local = Path(DATA_DIR) / name
    if not (local / "meta.json").is_file():
        BUILDERS[name](local)
    return local


# ------------------------------------------------------------------------------------------- check


def _load_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def compare(built: Path, shared: Path) -> tuple[bool, list[str]]:
    """Compare two BEIR folders: counts, texts equal by _id, qrels, bytes. -> (identical, report lines)."""
    lines = []
    same = True
    for kind in ("corpus", "queries"):
        a, b = _load_jsonl(built / f"{kind}.jsonl"), _load_jsonl(shared / f"{kind}.jsonl")
        by_id = {d["_id"]: d["text"] for d in b}
        exact = sum(by_id.get(d["_id"]) == d["text"] for d in a)
        as_set = len({d["text"] for d in a} & {d["text"] for d in b})
        ok = len(a) == len(b) == exact
        same &= ok
        lines.append(f"  {kind:8s} built {len(a):6d}  shared {len(b):6d}  same text at same _id {exact:6d} "
                     f"({100.0 * exact / max(len(b), 1):.2f}%)  distinct texts in both {as_set}")
    qa = (built / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    qb = (shared / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    common = len(set(qa[1:]) & set(qb[1:]))
    same &= qa == qb
    lines.append(f"  qrels    built {len(qa) - 1:6d}  shared {len(qb) - 1:6d}  same rows {common}")
    files = ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"]
    identical = [f for f in files if _sha(built / f) == _sha(shared / f)]
    lines.append(f"  byte-identical files: {', '.join(identical) or 'none'}")
    return same, lines


def check(shared_root: Path, downloads: Path | None = None) -> int:
    if not all((Path(shared_root) / n / "corpus.jsonl").is_file() for n in NAMES):
        raise BuildError(f"no shared copies to compare with under {shared_root} (need {', '.join(NAMES)})")
    all_same = True
    with tempfile.TemporaryDirectory(prefix="benchmarks-check-") as tmp:
        for name in NAMES:
            print(f"{name}: rebuilding from the registry packages ...", flush=True)
            built = BUILDERS[name](Path(tmp) / name, downloads=Path(downloads or Path(tmp) / "downloads"))
            same, lines = compare(built, Path(shared_root) / name)
            all_same &= same
            print("\n".join(lines))
            print(f"  -> {'identical' if same else 'DIFFERENT'}", flush=True)
    return 0 if all_same else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?", choices=NAMES, help="benchmark to build")
    ap.add_argument("--out", type=Path, help="output folder (default benchmarks/data/NAME)")
    ap.add_argument("--check", action="store_true",
                    help="rebuild both into a temp dir and compare with the shared copies")
    ap.add_argument("--shared", type=Path, default=SHARED_DIR, help=f"shared copies for --check (default {SHARED_DIR})")
    ap.add_argument("--downloads", type=Path,
                    help="keep downloaded packages here and reuse them (default: a temp dir, deleted)")
    ap.add_argument("--task-json", type=Path, help="nq-wiki: use this task.json instead of downloading")
    ap.add_argument("--pod-dir", type=Path, help="faq-perl-debian: folder with perlfaq1.pod..perlfaq9.pod")
    ap.add_argument("--faq-txt", type=Path, help="faq-perl-debian: debian-faq.en.txt(.gz)")
    args = ap.parse_args(argv)
    try:
        if args.check:
            return check(args.shared, args.downloads)
        if not args.name:
            ap.error("name a benchmark, or use --check")
        out = args.out or Path(DATA_DIR) / args.name
        if args.name == "nq-wiki":
            path = build_nq_wiki(out, task_json=args.task_json, downloads=args.downloads)
        else:
            pods = None
            if args.pod_dir:
                pods = [args.pod_dir / f"perlfaq{n}.pod" for n in range(1, 10)]
                missing = [p.name for p in pods if not p.is_file()]
                if missing:
                    raise BuildError(f"{args.pod_dir} lacks {', '.join(missing)}")
            path = build_faq_perl_debian(out, pod_files=pods, faq_txt=args.faq_txt, downloads=args.downloads)
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        print(f"{path}: {meta['queries']} queries, {meta['documents']} documents")
        return 0
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e.__class__.__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
