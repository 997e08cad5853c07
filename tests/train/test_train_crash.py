"""python -m projector.train SIGKILLed at random points, then re-run with the same command.

Every restart must complete and give the result of an uninterrupted run: model.safetensors byte for byte,
train_log.jsonl epoch for epoch and projector.json field for field (timing fields and --out aside).
The kill lands in one of three phases, chosen per run and recorded from what the files show afterwards:

  startup   before training starts (imports, reading the pairs and the checkpoint, embedding from the cache)
  training  in an epoch: checkpoint/state.safetensors holds N < EPOCHS finished epochs
  export    all epochs done (the checkpoint says so), projector.json not yet written

Each run prints one line (seed, phase, kill time, epochs finished before the kill, restart time, identical),
and the module prints a summary; ``-m stress`` adds 20 seeded runs (some with a second kill of the restart)
and checks that two uninterrupted runs give identical bytes (the baseline the restarts are held to).
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_train import make_qa_pairs

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 15
ARGS = ["--threads", "1", "--no-sentence-transformers", "--lr", "3e-3", "--batch-size", "8",
        "--epochs", str(EPOCHS), "--patience", str(EPOCHS)]
LOG_TIMING = {"seconds", "train_seconds"}  # train_log.jsonl fields that measure time
META_TIMING = {("training", "train_seconds"), ("training", "pairs_per_second"), ("training", "config", "out")}
RUNS: list[dict] = []


def command(pairs: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "projector.train", "--pairs", str(pairs), "--out", str(out), *ARGS]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    # Module fixtures run before conftest's per-test cache fixture: name the session cache explicitly.
    cache = os.environ.get("PROJECTOR_TEST_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "projector-cache"))
    return {**os.environ, "PROJECTOR_CACHE_DIR": cache, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, env, request):
    """One uninterrupted run (it also warms the embedding cache, so each later run embeds nothing)."""
    root = tmp_path_factory.mktemp("crash")
    pairs = make_qa_pairs(root / "pairs")
    out = root / "reference"
    started = time.monotonic()
    r = subprocess.run(command(pairs, out), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    seconds = time.monotonic() - started
    yield pairs, out, seconds
    if RUNS:
        tr = request.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            phases = {p: sum(r["phase"] == p for r in RUNS) for p in ("startup", "training", "export", "finished")}
            tr.write_line("")
            tr.write_line(f"train crash runs: {len(RUNS)} kills in {len({r['seed'] for r in RUNS})} runs, phases "
                          f"{phases}, identical {sum(r['identical'] for r in RUNS if r['last'])} of "
                          f"{sum(r['last'] for r in RUNS)} restarts, lost 0; reference run {seconds:.1f}s")
            for r in RUNS:
                tr.write_line("  " + r["line"])


def checkpoint_state(out: Path) -> dict | None:
    from safetensors import safe_open

    path = out / "checkpoint" / "state.safetensors"
    if not path.exists():
        return None
    with safe_open(str(path), framework="np") as f:
        return json.loads(f.metadata()["state"])


def log_rows(out: Path) -> list[dict]:
    path = out / "train_log.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [{k: v for k, v in r.items() if k not in LOG_TIMING} for r in rows]


def meta_without_timing(out: Path) -> dict:
    meta = json.loads((out / "projector.json").read_text())
    for path in META_TIMING:
        d = meta
        for k in path[:-1]:
            d = d[k]
        d.pop(path[-1])
    return meta


def kill_in_phase(cmd, out: Path, phase: str, rng: random.Random, env: dict, err: Path) -> dict:
    """Start ``cmd`` and SIGKILL it in ``phase``; return the phase its log and files show, and the figures."""
    log = out / "train_log.jsonl"
    lines = lambda: log.read_bytes().count(b"\n") if log.exists() else 0
    before = lines()
    started = time.monotonic()
    with open(err, "wb") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=f)
    deadline = started + 300
    if phase == "startup":
        until = started + rng.uniform(0.2, 4.0)
        while time.monotonic() < min(until, deadline) and b"embedded in" not in err.read_bytes() and proc.poll() is None:
            time.sleep(0.01)
    elif phase == "training":
        target = rng.randint(before + 1, EPOCHS - 3) if before < EPOCHS - 3 else EPOCHS - 1
        while time.monotonic() < deadline and lines() < target and proc.poll() is None:
            time.sleep(0.003)
        time.sleep(rng.uniform(0.0, 0.03))  # somewhere into the next epoch
    else:  # export: after the last epoch, a random moment into calibrating / validating / writing
        while time.monotonic() < deadline and lines() < EPOCHS and proc.poll() is None:
            time.sleep(0.003)
        time.sleep(rng.uniform(0.0, 0.5))
    exited_before = proc.poll() is not None
    proc.kill()
    proc.wait()
    kill_s = time.monotonic() - started
    state = checkpoint_state(out)
    if exited_before or (out / "projector.json").exists():
        seen = "finished"
    elif b"embedded in" not in err.read_bytes():  # logged once the inputs are embedded, just before training
        seen = "startup"
    elif not (state and state["done"]):
        seen = "training"
    else:
        seen = "export"
    return {"phase": seen, "kill_s": round(kill_s, 2), "epochs": 0 if state is None else state["epoch"],
            "model_written": (out / "model.safetensors").exists()}


def crash_and_resume(seed: int, phases: list[str], reference, env, tmp_path) -> None:
    pairs, ref, _ = reference
    rng = random.Random(seed)
    out = tmp_path / "model"
    cmd = command(pairs, out)
    for i, phase in enumerate(phases):
        rec = kill_in_phase(cmd, out, phase, rng, env, tmp_path / f"stderr-{i}")
        rec.update(seed=seed, kill=i + 1, asked=phase, last=False, identical=None)
        RUNS.append(rec)
        rec["line"] = (f"seed {seed} kill {i + 1}: asked {phase:8s} -> {rec['phase']:8s} at {rec['kill_s']:5.2f}s, "
                       f"{rec['epochs']:2d}/{EPOCHS} epochs checkpointed"
                       + (", model.safetensors already written" if rec["model_written"] else ""))
    started = time.monotonic()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    restart_s = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    same_model = (out / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
    same_log = log_rows(out) == log_rows(ref)
    same_meta = meta_without_timing(out) == {**meta_without_timing(ref)}
    leftovers = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.name.startswith("."))
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if not p.name.startswith("."))
    rec = RUNS[-1]
    rec.update(last=True, identical=same_model and same_log and same_meta)
    rec["line"] += (f"; restart {restart_s:4.1f}s, model.safetensors {'identical' if same_model else 'DIFFERENT'}, "
                    f"log {'identical' if same_log else 'DIFFERENT'}, projector.json "
                    f"{'identical' if same_meta else 'DIFFERENT'}" + (f", stale temp files {leftovers}" if leftovers else ""))
    print(rec["line"])
    assert same_model, "model.safetensors differs from the uninterrupted run"
    assert same_log, (log_rows(out), log_rows(ref))
    assert same_meta
    assert len(log_rows(out)) == EPOCHS
    # A kill mid-write leaves a temp file; files.write_bytes sweeps those of dead writers on the next write.
    assert not leftovers, leftovers
    assert files == sorted(p.relative_to(ref).as_posix() for p in ref.rglob("*") if not p.name.startswith("."))


@pytest.mark.stress
def test_same_command_twice_gives_the_same_bytes(reference, env, tmp_path):
    """The baseline the crash runs are held to: two uninterrupted runs write identical model.safetensors."""
    pairs, ref, _ = reference
    r = subprocess.run(command(pairs, tmp_path / "again"), cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "again/model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
    assert log_rows(tmp_path / "again") == log_rows(ref)
    assert meta_without_timing(tmp_path / "again") == meta_without_timing(ref)


@pytest.mark.parametrize("seed,phase", [(2, "training"), (3, "export")])  # -m stress: startup kills too
def test_sigkill_then_rerun_gives_the_uninterrupted_result(seed, phase, reference, env, tmp_path):
    crash_and_resume(seed, [phase], reference, env, tmp_path)


@pytest.mark.stress
@pytest.mark.parametrize("seed", range(100, 120))
def test_sigkill_at_random_points_stress(seed, reference, env, tmp_path):
    rng = random.Random(seed)
    phases = [rng.choice(["startup", "training", "training", "export"]) for _ in range(rng.choice([1, 1, 2]))]
    crash_and_resume(seed, phases, reference, env, tmp_path)
