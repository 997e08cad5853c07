"""The registry packages the real-query benchmarks are rebuilt from: fetched, then read into BEIR rows.

    raw, origin = fetch_task_json(downloads)            # bigbench's sdist (pip download; never installed)
    corpus, queries, qrels = parse_nq_task(json.loads(raw))
    pods, faq_txt, debs = fetch_debian_sources(downloads)   # apt-get download + dpkg-deb -x (nothing installed)
    corpus, queries, qrels = faq_to_beir(parse_pod(text) + parse_debian_faq(text))

``benchmarks/build.py`` writes what these return as BEIR folders (``write_beir``) and keeps the registry of
sets (``benchmark_dir``). A failure is a ``BuildError``: one line saying what failed and what to install or
do. Standard library only, so it runs before the project is installed.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

BIGBENCH_REQ = "bigbench==1.0.0"
TASK_MEMBER = "bigbench/benchmark_tasks/contextual_parametric_knowledge_conflicts/task.json"
DEBIAN_PACKAGES = ("perl-doc", "debian-faq")
DEBIAN_FAQ_PATH = "usr/share/doc/debian/FAQ/debian-faq.en.txt.gz"

# Sections whose answer is shorter than this many characters (after whitespace is collapsed) are
# dropped: "See CPAN Ports|http://...", "Get the Business::CreditCard module from CPAN.". The shared
# copy drops exactly the sections under 47 characters and keeps every one of 57 or more; 50 it is.
FAQ_MIN_ANSWER_CHARS = 50


class BuildError(Exception):
    """One line for the user: what failed and what to install or do."""


# ----------------------------------------------------------------------------------------- parsing

_NQ_INPUT = re.compile(r"^\s*Question:(.*?)\nContext:(.*)$", re.S)


def parse_nq_task(task: dict) -> tuple[list[dict], list[dict], list[tuple[str, str]]]:
    """BIG-bench contextual_parametric_knowledge_conflicts -> (corpus, queries, qrels).

    Each example's input is "Question: ...\\nContext: ..." and its target is the entity the task's
    authors substituted into the passage; every occurrence of it is replaced by "___". A question
    asked twice keeps its first example only; identical (masked) passages become one document.
    """
    examples = task.get("examples")
    if not isinstance(examples, list):
        raise BuildError("task.json has no 'examples' list: not the contextual_parametric_knowledge_conflicts task")
    docs: dict[str, str] = {}
    queries: list[dict] = []
    qrels: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, ex in enumerate(examples):
        m = _NQ_INPUT.match(ex.get("input", ""))
        if not m:
            raise BuildError(f"task.json example {i}: input is not 'Question: ...\\nContext: ...'")
        question, context = m.group(1).strip(), m.group(2).strip()
        if not question or question in seen:
            continue
        seen.add(question)
        target = str(ex.get("target", "")).strip()
        passage = context.replace(target, "___") if target else context
        if passage not in docs:
            docs[passage] = f"d{len(docs)}"
        qid = f"q{len(queries)}"
        queries.append({"_id": qid, "text": question})
        qrels.append((qid, docs[passage]))
    corpus = [{"_id": did, "title": "", "text": text} for text, did in docs.items()]
    return corpus, queries, qrels


# A POD formatting code with no angle bracket inside, e.g. C<foo>, L<text|url>, E<lt>: kept as its
# content (E<lt> becomes "lt": entities are not decoded). One pass, innermost first, as the shared
# copy was made: nested or C<< ... >> codes that contain < or > are left (partly) as they are.
_POD_CODE = re.compile(r"[A-Z]<+([^<>]*)>+")


def parse_pod(text: str) -> list[tuple[str, str]]:
    """perlfaqN.pod -> [(question, answer)], one per =head2.

    The question is the =head2 line as written (formatting codes included); the answer is every
    line up to the next =head1/=head2 except POD command lines (=over, =item, =back, ...), with
    formatting codes reduced to their content and all whitespace collapsed.
    """
    sections: list[tuple[str, list[str]]] = []
    question: str | None = None
    body: list[str] = []
    for line in text.splitlines():
        if line.startswith("=head1") or line.startswith("=head2"):
            if question is not None:
                sections.append((question, body))
            question = line[6:].strip() if line.startswith("=head2") else None
            body = []
        elif question is not None and not line.startswith("="):
            body.append(line)
    if question is not None:
        sections.append((question, body))
    return [(q, " ".join(_POD_CODE.sub(r"\1", "\n".join(b)).split())) for q, b in sections]


# "1.2. What is Debian GNU/Linux?" at the start of a line (chapter titles "1. ..." and the indented
# table of contents do not match; "8.1.6.1." sub-sub-sections stay inside their section's answer).
_FAQ_HEADING = re.compile(r"^\d+\.\d+(?:\.\d+)?\.\s+(\S.*)$")


def parse_debian_faq(text: str) -> list[tuple[str, str]]:
    """debian-faq.en.txt -> [(question, answer)], split at numbered questions.

    A question runs on to the first blank line (line breaks become one space; a line's trailing
    space is kept); the answer is everything up to the next numbered question, whitespace collapsed.
    """
    lines = text.splitlines()
    sections: list[tuple[str, str]] = []
    question: str | None = None
    body: list[str] = []
    i = 0
    while i < len(lines):
        m = _FAQ_HEADING.match(lines[i])
        if m:
            if question is not None:
                sections.append((question, " ".join(" ".join(body).split())))
            head = [m.group(1)]
            i += 1
            while i < len(lines) and lines[i].strip():
                head.append(lines[i])
                i += 1
            question = re.sub(r"\n\s*", " ", "\n".join(head)).strip()
            body = []
            continue
        if question is not None:
            body.append(lines[i])
        i += 1
    if question is not None:
        sections.append((question, " ".join(" ".join(body).split())))
    return sections


def faq_to_beir(sections: list[tuple[str, str]]) -> tuple[list[dict], list[dict], list[tuple[str, str]]]:
    """[(question, answer)] -> (corpus, queries, qrels), one document per question.

    Answers under FAQ_MIN_ANSWER_CHARS characters are dropped (a bare link says nothing to retrieve),
    and so is every question whose text occurs more than once (the Debian FAQ has two "aptitude"
    sections, each with a different answer: which one is right would be a guess).
    """
    kept = [(q, a) for q, a in sections if q and len(a) >= FAQ_MIN_ANSWER_CHARS]
    counts = Counter(q for q, _ in kept)
    kept = [(q, a) for q, a in kept if counts[q] == 1]
    corpus = [{"_id": f"d{i}", "title": "", "text": a} for i, (_, a) in enumerate(kept)]
    queries = [{"_id": f"q{i}", "text": q} for i, (q, _) in enumerate(kept)]
    qrels = [(f"q{i}", f"d{i}") for i in range(len(kept))]
    return corpus, queries, qrels


# ---------------------------------------------------------------------------------------- fetching


def _run(cmd: list[str], what: str, hint: str, cwd: Path | None = None) -> None:
    try:
        p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise BuildError(f"{what}: `{cmd[0]}` not found; {hint}") from None
    if p.returncode != 0:
        lines = [l.strip() for l in (p.stderr or p.stdout).splitlines() if l.strip()]
        last = lines[-1] if lines else f"exit status {p.returncode}"
        raise BuildError(f"{what} failed ({last}); {hint}")


def fetch_task_json(downloads: Path) -> tuple[bytes, str]:
    """Download the bigbench sdist (never installed) and read task.json out of it."""
    downloads.mkdir(parents=True, exist_ok=True)
    archives = sorted(p for p in downloads.glob("bigbench-1.0.0*") if p.suffix in (".gz", ".zip", ".whl"))
    if not archives:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "bigbench", "--quiet",
              BIGBENCH_REQ, "-d", str(downloads)],
             f"pip download {BIGBENCH_REQ}", "check that pip works and reaches the package index")
        archives = sorted(p for p in downloads.glob("bigbench-1.0.0*") if p.suffix in (".gz", ".zip", ".whl"))
    if not archives:
        raise BuildError(f"pip download {BIGBENCH_REQ} left no archive in {downloads}")
    archive = archives[0]
    try:
        if archive.suffix == ".gz":
            with tarfile.open(archive, "r:gz") as tf:
                for member in tf:  # streamed: stops at the one file we need
                    if member.name.endswith("/" + TASK_MEMBER):
                        return tf.extractfile(member).read(), archive.name
        else:
            with zipfile.ZipFile(archive) as zf:
                for n in zf.namelist():
                    if n == TASK_MEMBER or n.endswith("/" + TASK_MEMBER):
                        return zf.read(n), archive.name
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as e:
        raise BuildError(f"cannot read {archive.name} ({e}); delete it and run again") from None
    raise BuildError(f"{archive.name} has no {TASK_MEMBER}")


def fetch_debian_sources(downloads: Path) -> tuple[list[Path], Path, list[str]]:
    """apt-get download perl-doc debian-faq, unpack with dpkg-deb -x (no install).

    Returns (perlfaq1..9.pod paths, debian-faq.en.txt.gz path, .deb file names).
    """
    downloads.mkdir(parents=True, exist_ok=True)
    hint = ("needs a Debian machine with apt-get and dpkg-deb (run `apt-get update` first), "
            "or pass --pod-dir/--faq-txt")
    debs = {}
    for pkg in DEBIAN_PACKAGES:
        found = sorted(downloads.glob(f"{pkg}_*.deb"))
        if not found:
            _run(["apt-get", "download", pkg], f"apt-get download {pkg}", hint, cwd=downloads)
            found = sorted(downloads.glob(f"{pkg}_*.deb"))
        if not found:
            raise BuildError(f"apt-get download {pkg} left no .deb in {downloads}; {hint}")
        debs[pkg] = found[-1]
    root = downloads / "unpacked"
    for deb in debs.values():
        _run(["dpkg-deb", "-x", str(deb), str(root)], f"dpkg-deb -x {deb.name}", hint)
    pods = []
    for n in range(1, 10):
        found = sorted(root.glob(f"usr/share/perl/*/pod/perlfaq{n}.pod"))
        if not found:
            raise BuildError(f"{debs['perl-doc'].name} has no perlfaq{n}.pod under usr/share/perl/*/pod/")
        pods.append(found[-1])
    faq = root / DEBIAN_FAQ_PATH
    if not faq.exists():
        raise BuildError(f"{debs['debian-faq'].name} has no {DEBIAN_FAQ_PATH}")
    return pods, faq, [d.name for d in debs.values()]
