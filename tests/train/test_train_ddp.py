"""torchrun: 2 CPU processes on gloo train the same model as 1 process (issue 5).

Both runs go through the real command line (``python -m torch.distributed.run --nproc_per_node 2 -m
projector.train``), with a batch size that does not divide by 2 (uneven shares, padded gather) and random
negatives (the shared generator must stay in step on both ranks).
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from test_train import make_labelled_pairs, make_qa_pairs

SETTINGS = ["--threads", "1", "--no-sentence-transformers", "--lr", "3e-3", "--batch-size", "7", "--epochs", "6",
            "--patience", "10"]


def _train(pairs, out, processes: int, extra=()):
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}  # loopback only, no oversubscription
    launcher = [sys.executable, "-m", "projector.train"] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
        "-m", "projector.train"]
    r = subprocess.run([*launcher, "--pairs", str(pairs), "--out", str(out), *SETTINGS, *extra], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _weights(out):
    from safetensors.numpy import load_file

    return load_file(str(out / "checkpoint" / "state.safetensors"))


@pytest.mark.parametrize("task", ["qa", "pairs"])
def test_two_gloo_processes_train_the_same_model_as_one(tmp_path, task):
    pairs = make_qa_pairs(tmp_path / "qa") if task == "qa" else make_labelled_pairs(tmp_path / "pairs")
    extra = ["--random-negatives", "2"] if task == "qa" else []
    _train(pairs, tmp_path / "one", 1, extra)            # also fills the embedding cache for the 2-process run
    two = _train(pairs, tmp_path / "two", 2, extra)

    one_w, two_w = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert set(one_w) == set(two_w)
    # Adam turns float-rounding noise in near-zero gradients into whole lr-sized steps, so weights drift
    # apart by ~1e-4 after a few epochs even between two 1-process runs with 1 vs 2 torch threads (measured
    # 4.2e-4 here). The exact check of the distributed step is the gradient test below.
    for name in one_w:  # every epoch's weights, the best ones, and AdamW's moments
        np.testing.assert_allclose(two_w[name], one_w[name], atol=1e-3, err_msg=name)
    moved = one_w["model.W_q"] - np.eye(*one_w["model.W_q"].shape)
    assert np.abs(moved).max() > 1e-3  # it trained: the comparison is not identity == identity

    logs = [[json.loads(x) for x in (tmp_path / d / "train_log.jsonl").read_text().splitlines()] for d in ("one", "two")]
    assert len(logs[0]) == len(logs[1]) == 6
    for a, b in zip(*logs):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
        assert b["val_ndcg@10"] == pytest.approx(a["val_ndcg@10"], abs=1e-3)

    meta = [json.loads((tmp_path / d / "projector.json").read_text()) for d in ("one", "two")]
    assert meta[1]["selected"] == meta[0]["selected"]
    assert json.loads((tmp_path / "two" / "config.json").read_text())["processes"] == 2
    # rank 0 alone writes: no stray temp files from a second writer, one export
    assert not [p for p in (tmp_path / "two").rglob(".*tmp*")]
    assert two.stderr.count("wrote ") == 1, two.stderr[-2000:]


def _rank_gradients(rank, world, init_file, task, queue):
    """One training step's loss and gradients on ``rank`` of a 2-process gloo group (file rendezvous: no port)."""
    import torch
    import torch.distributed as dist

    from projector.train.distributed import Distributed
    from projector.train.batch import TrainStep, batch_loss

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model, data, idx = _toy_problem(task)
    step = torch.nn.parallel.DistributedDataParallel(TrainStep(model))
    gen = torch.Generator().manual_seed(7)
    loss = batch_loss(step, data, idx, None, 3 if task == "qa" else 0, gen, Distributed(rank, world, torch.device("cpu")))
    loss.backward()
    shares = loss.detach().clone()
    dist.all_reduce(shares)
    queue.put((rank, shares.item() / world, {n: p.grad.numpy().copy() for n, p in model.named_parameters()}))
    dist.barrier()  # neither rank leaves while the other still talks to it
    dist.destroy_process_group()
    # The result is delivered; leave without the interpreter's teardown, where gloo's threads now and then
    # abort a spawned child (SIGABRT in CI after a correct result) and fail the test for nothing it checks.
    queue.close()
    queue.join_thread()
    os._exit(0)


def _toy_problem(task):
    import torch

    from projector.train.projection import Projection
    from projector.train.inputs import Data

    g = torch.Generator().manual_seed(0)
    x = lambda n: torch.nn.functional.normalize(torch.randn(n, 16, generator=g), dim=-1)
    model = Projection(16, 8, "asymmetric" if task == "qa" else "symmetric")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    if task == "qa":
        corpus = x(30)
        pos = torch.tensor([0, 2, 3, 0, 5, 7, 9, 11, 2, 13, 4])               # repeats: shared positives
        data = Data(corpus, x(11), pos, None, None)
    elif task == "pairs":
        data = Data(None, x(11), None, x(11), torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0]))
    else:  # items: label ids, -1 unknown (in no pair); the batch's pairs span both ranks' shares
        data = Data(None, x(11), None, None, torch.tensor([0, 1, 2, 0, 1, -1, 2, 0, 1, 1, 0]))
    return model, data, torch.tensor([3, 1, 4, 10, 5, 9, 2, 6, 8])             # a batch of 9: shares of 5 and 4


@pytest.mark.parametrize("task", ["qa", "pairs", "items"])
def test_distributed_step_has_the_one_process_gradient(tmp_path, task):
    """2 ranks, each with its share of a batch of 9 (5 + 4 rows): the summed loss and DDP's averaged gradients
    equal one process's loss and gradient of the whole batch (in-batch negatives gathered across ranks)."""
    import torch
    import torch.multiprocessing as mp

    from projector.train.batch import TrainStep, batch_loss

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank_gradients, args=(r, 2, tmp_path / "rendezvous", task, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0

    model, data, idx = _toy_problem(task)
    loss = batch_loss(TrainStep(model), data, idx, None, 3 if task == "qa" else 0, torch.Generator().manual_seed(7))
    loss.backward()
    for rank, total, grads in results:
        assert total == pytest.approx(loss.item(), rel=1e-6)
        for name, p in model.named_parameters():
            np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-5, atol=1e-7, err_msg=f"rank {rank} {name}")
