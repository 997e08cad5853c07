"""The real CLIs on a full disk, under a file size limit and out of memory: one line, exit 2, no traceback,
and the same command afterwards resumes and completes with nothing lost or duplicated.

Faults are real, not mocked handlers:
  - EFBIG: the child runs under resource.RLIMIT_FSIZE (SIGXFSZ ignored), so a write past the limit fails;
  - ENOSPC: the output folder is a small tmpfs in a private mount namespace (``unshare -rm``; skipped where
    user namespaces are not allowed), grown with ``mount -o remount`` before the re-run ("free space");
  - out of memory: RLIMIT_AS lowered after the imports, so the first large allocation fails.

The quick run has one generate and one train case; ``-m stress`` adds the rest (several full runs each).
"""
from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import pytest

from openai_server import FakeOpenAI
from test_generate import N_PASSAGES, check_output, config, make_corpus
from test_train import make_qa_pairs

REPO = Path(__file__).resolve().parent.parent
TRAIN_ARGS = ["--threads", "1", "--no-sentence-transformers", "--lr", "3e-3", "--batch-size", "8", "--epochs", "15",
              "--patience", "15"]
DISK_LINE = (r"^projector\.(generate|train): error: (no space left|file too large \(file system maximum or ulimit -f\)) "
             r"writing (?P<file>.+): free space or point --out / PROJECTOR_CACHE_DIR at a larger disk; re-run the "
             r"same command to resume \(nothing already written is lost\)$")


def file_size_limit(limit: int):
    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, not a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


def one_line_error(r: subprocess.CompletedProcess, pattern: str = DISK_LINE) -> re.Match:
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    m = re.match(pattern, last)
    assert m, last
    return m


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = os.environ.get("PROJECTOR_TEST_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "projector-cache"))
    return {**os.environ, "PROJECTOR_CACHE_DIR": cache, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


# ---------------------------------------------------------------------------------------------- generate


def generate_cmd(cfg, srv, qpp: int) -> list[str]:
    return [sys.executable, "-m", "projector.generate", "--corpus", cfg.corpus, "--id-field", "id", "--out", cfg.out,
            "--base-url", srv.base_url, "--model", "fake-model", "--chunk-tokens", "60", "--chunk-overlap", "0",
            "--max-passages", str(N_PASSAGES), "--concurrency", "3", "--backoff", "0.05",
            "--questions-per-passage", str(qpp)]


def rows(out: Path) -> dict:
    dd = datasets.load_from_disk(str(out / "dataset"))
    return {s: sorted(json.dumps(r, sort_keys=True) for r in dd[s]) for s in dd}


def records(out: Path) -> list[str]:
    return [json.loads(line)["key"] for line in (out / "records.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("where", ["records", pytest.param("dataset", marks=pytest.mark.stress)])
def test_generate_file_size_limit_then_rerun_loses_nothing(where, tmp_path, env):
    from projector.generate.stage import generate

    qpp = 2 if where == "records" else 6  # 6 questions: the dataset's arrow file outgrows records.jsonl
    (tmp_path / "ref").mkdir()
    with FakeOpenAI() as srv:
        generate(config(tmp_path / "ref", srv, questions_per_passage=qpp))  # reference, no limit
    ref = tmp_path / "ref" / "out"
    size = lambda p: p.stat().st_size
    arrow = max(size(p) for p in (ref / "dataset").rglob("*.arrow"))
    if where == "records":
        limit = size(ref / "records.jsonl") // 3  # fails about a third of the way through the requests
    else:
        assert arrow > size(ref / "records.jsonl") + 2000
        limit = (arrow + size(ref / "records.jsonl")) // 2  # every record fits, the dataset does not
    with FakeOpenAI() as srv:
        cfg = config(tmp_path, srv, questions_per_passage=qpp)
        cmd = generate_cmd(cfg, srv, qpp)
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                           preexec_fn=file_size_limit(limit))
        m = one_line_error(r)
        out = Path(cfg.out)
        if where == "records":
            assert m.group("file") == str(out / "records.jsonl")
            assert (out / "records.jsonl").stat().st_size == limit  # cut at the limit: a torn last line
            assert 0 < (out / "records.jsonl").read_bytes().count(b"\n") < N_PASSAGES
        else:
            assert m.group("file") == str(out / "dataset")
            assert len(set(records(out))) == N_PASSAGES  # every answer was kept
        first = srv.requests
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        resent = srv.requests
    keys = records(out)
    assert len(keys) == len(set(keys)) == N_PASSAGES  # nothing lost, nothing recorded twice
    check_output(out, N_PASSAGES, qpp)
    assert rows(out) == rows(ref)  # the same dataset as the run that never hit the limit
    print(f"generate, file size limit {limit} B while writing {where}: {first} requests before, "
          f"{resent - first} after (only the unrecorded ones are asked again)")
    if where == "dataset":
        assert resent == first  # nothing asked again


# ------------------------------------------------------------------------------------------------- train


_REFS: dict = {}


@pytest.fixture
def train_reference(tmp_path_factory, env):
    """Uninterrupted runs to compare with (in-process: the same bytes as the CLI, checked by the crash tests'
    reference; they also warm the embedding cache). ``reference(name, *extra_args)`` -> (pairs, out)."""
    from projector.train.stage import train

    def reference(name: str, **extra):
        if name not in _REFS:
            root = tmp_path_factory.mktemp(f"faults-{name}")
            pairs = make_qa_pairs(root / "pairs")
            train(pairs=str(pairs), out=str(root / name), cache_dir=env["PROJECTOR_CACHE_DIR"], lr=3e-3, batch_size=8,
                  epochs=15, patience=15, threads=1, sentence_transformers=False, **extra)
            _REFS[name] = pairs, root / name
        return _REFS[name]

    return reference


def test_train_file_size_limit_at_export_then_rerun_resumes(train_reference, tmp_path, env):
    """rank 32: the checkpoint (~0.5 MB) fits under the limit, model.safetensors (~0.7 MB, with M) does not."""
    pairs, ref = train_reference("rank32", rank=32)
    ckpt, model = (ref / "checkpoint" / "state.safetensors").stat().st_size, (ref / "model.safetensors").stat().st_size
    assert ckpt < model
    out = tmp_path / "model"
    cmd = [sys.executable, "-m", "projector.train", "--pairs", str(pairs), "--out", str(out), *TRAIN_ARGS,
           "--rank", "32"]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                       preexec_fn=file_size_limit((ckpt + model) // 2))
    assert one_line_error(r).group("file") == str(out / "model.safetensors")
    assert not (out / "projector.json").exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # the failed write left no temp file
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming after epoch 15" in r.stderr  # no epoch trained twice
    assert (out / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
    assert (out / "train_log.jsonl").read_text().count("\n") == 15


@pytest.mark.stress
def test_train_file_size_limit_at_checkpoint_then_rerun_completes(train_reference, tmp_path, env):
    pairs, ref = train_reference("full")
    out = tmp_path / "model"
    cmd = [sys.executable, "-m", "projector.train", "--pairs", str(pairs), "--out", str(out), *TRAIN_ARGS]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                       preexec_fn=file_size_limit(1 << 20))  # the full-rank checkpoint is ~5.9 MB
    where = one_line_error(r).group("file")
    # safetensors' writer reports the error as text, without the file name: the line names --out and the cache
    assert where in (str(out / "checkpoint" / "state.safetensors"),
                     f"a file under {out} or the cache {env['PROJECTOR_CACHE_DIR']}"), where
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()


def _can_mount_tmpfs(tmp: Path) -> bool:
    if not shutil.which("unshare"):
        return False
    probe = tmp / "probe"
    probe.mkdir()
    r = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k none {probe}"],
                       capture_output=True, timeout=30)
    return r.returncode == 0


@pytest.mark.stress
def test_no_space_left_on_a_small_tmpfs_then_rerun_after_freeing_space(train_reference, tmp_path, env):
    """A real ENOSPC: --out is a 1 MiB tmpfs; then the tmpfs grows to 64 MiB and the same command resumes."""
    if not _can_mount_tmpfs(tmp_path):
        pytest.skip("no user namespaces here (unshare -rm mount tmpfs not allowed)")
    pairs, ref = train_reference("rank32", rank=32)
    out, keep = tmp_path / "disk", tmp_path / "kept"
    out.mkdir()
    cmd = " ".join([sys.executable, "-m", "projector.train", "--pairs", str(pairs), "--out", str(out), *TRAIN_ARGS,
                    "--rank", "32"])
    script = textwrap.dedent(f"""
        mount -t tmpfs -o size=1m none {out} || exit 90
        {cmd} 2> {tmp_path}/first.err; echo $? > {tmp_path}/first.rc
        cp -a {out} {tmp_path}/after-first
        mount -o remount,size=64m {out} || exit 91
        {cmd} 2> {tmp_path}/second.err; echo $? > {tmp_path}/second.rc
        cp -a {out} {keep}
    """)
    r = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr
    first = subprocess.CompletedProcess([], int((tmp_path / "first.rc").read_text()), "",
                                        (tmp_path / "first.err").read_text())
    m = one_line_error(first)
    assert m.group(2) == "no space left", m.group(0)
    assert int((tmp_path / "second.rc").read_text()) == 0, (tmp_path / "second.err").read_text()[-3000:]
    assert (keep / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
    assert (keep / "train_log.jsonl").read_text().count("\n") == 15
    print(f"tmpfs 1 MiB: {m.group(0)}")


# ---------------------------------------------------------------------------------------------- memory

OOM_WRAPPER = textwrap.dedent("""
    import resource, sys
    import numpy as np, torch, datasets, safetensors.torch
    import projector.train.stage as train, projector.train.export, projector.train.projection
    torch.set_num_threads(1)
    # what would otherwise be loaded or allocated lazily: BLAS buffers, the optimiser's modules
    x = np.random.default_rng(0).normal(size=(384, 384)); np.linalg.eigh(x @ x.T); np.linalg.svd(x)
    p = torch.nn.Parameter(torch.ones(384, 384)); o = torch.optim.AdamW([p]); (p @ p).sum().backward(); o.step()
    vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + int(sys.argv[1]) * 2**20, resource.RLIM_INFINITY))
    sys.exit(train.main(sys.argv[2:]))
""")


def _default_thread_stacks():
    """A thread's stack is sized by RLIMIT_STACK (glibc reads it at start): where that is 64 MiB or unlimited
    (CI was), the first thread any library starts cannot get its stack within 80 MiB of headroom, and the run fails
    there ("can't start new thread") before the allocation this test is about. The usual 8 MiB, in the child."""
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    resource.setrlimit(resource.RLIMIT_STACK, (8 << 20 if hard == resource.RLIM_INFINITY else min(8 << 20, hard), hard))


@pytest.mark.stress
def test_train_out_of_memory_says_what_to_lower_then_rerun_completes(train_reference, tmp_path, env):
    """80 MiB of headroom (the run itself needs ~40) and one (20, 5000, 384) float32 tensor of 154 MB:
    torch's CPU allocator fails on it, in the first training step."""
    pairs, _ = train_reference("full")
    out = tmp_path / "model"
    args = ["--pairs", str(pairs), "--out", str(out), *TRAIN_ARGS, "--batch-size", "20", "--random-negatives",
            "5000", "--epochs", "2"]
    r = subprocess.run([sys.executable, "-c", OOM_WRAPPER, "80", *args], cwd=REPO, capture_output=True, text=True,
                       env={**env, "OPENBLAS_NUM_THREADS": "1"}, timeout=600, preexec_fn=_default_thread_stacks)
    m = one_line_error(r, r"^projector\.train: error: out of memory \((?P<detail>.*)\): lower --batch-size, "
                          r"--random-negatives, --hard-negatives or --val-max-queries, use --device cpu if the GPU "
                          r"ran out, or use fewer --encode-workers; re-run the same command to resume \(nothing "
                          r"already written is lost\)$")
    assert "can't allocate memory" in m.group("detail") and "153600000 bytes" in m.group("detail"), m.group(0)
    r = subprocess.run([sys.executable, "-m", "projector.train", *args], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "projector.json").exists()


@pytest.mark.parametrize("kind", ["python", "numpy", "torch", "cuda"])
def test_allocation_failures_are_one_line(kind, tmp_path):
    """Each kind of allocation failure, raised for real under RLIMIT_AS, through projector.cli.run. CUDA's is the
    exception torch raises (torch.OutOfMemoryError), since there is no GPU here to fill."""
    alloc = {"python": "bytearray(1 << 34)", "numpy": "__import__('numpy').ones(1 << 32)",
             "torch": "__import__('torch').ones(1 << 32)",
             "cuda": "raise __import__('torch').OutOfMemoryError('CUDA out of memory. Tried to allocate 20.00 GiB')"}[kind]
    code = textwrap.dedent(f"""
        import resource, sys
        import numpy{', torch' if kind in ('torch', 'cuda') else ''}
        from projector.cli import run
        resource.setrlimit(resource.RLIMIT_AS, (1 << 33, resource.RLIM_INFINITY))
        def main(argv):
            {alloc}
        sys.exit(run(main, "train", []))
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    one_line_error(r, r"^projector\.train: error: out of memory \(.+\): lower --batch-size")


def test_a_wrapped_machine_failure_is_not_reported_as_bad_input(tmp_path):
    """pairs.load_pairs turns any failure of datasets into "cannot read ... re-run projector.generate"; when the
    cause is a thread that could not start (seen under RLIMIT_AS) or a full disk, the line says so instead."""
    code = textwrap.dedent("""
        import errno, sys
        from projector.cli import run
        from projector.errors import DataError
        def main(argv):
            kind = argv[0]
            try:
                if kind == "thread":
                    raise RuntimeError("can't start new thread")
                raise OSError(errno.ENOSPC, "No space left on device", "/data/out/x.arrow")
            except Exception as e:
                raise DataError(f"cannot read pairs/dataset as a datasets.DatasetDict ({e}); re-run generate") from e
        sys.exit(run(main, "train", sys.argv[1:]))
    """)
    r = subprocess.run([sys.executable, "-c", code, "thread"], cwd=REPO, capture_output=True, text=True, timeout=60)
    one_line_error(r, r"^projector\.train: error: out of memory \(can't start new thread\): lower --batch-size")
    r = subprocess.run([sys.executable, "-c", code, "disk"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert one_line_error(r).group("file") == "/data/out/x.arrow"


def test_disk_full_reasons_and_text_forms():
    import errno

    from projector.cli import disk_full

    assert disk_full(OSError(errno.ENOSPC, "No space left on device", "/o/a")) == ("no space left", "/o/a")
    assert disk_full(OSError(errno.EDQUOT, "Disk quota exceeded")) == ("disk quota exceeded", None)
    err = RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert disk_full(err) == ("no space left", None)
    assert disk_full(OSError(errno.EACCES, "Permission denied", "/o/a")) is None
    from projector.errors import CorpusError

    assert disk_full(CorpusError("notes.txt: File too large is the title of line 3")) is None  # user text
