"""End-to-end runs through torchrun (gloo, CPU), each under a timeout, checked against a plain
single-process FedAvg written here."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from fedrun import checks
from fedrun.config import parse_args
from fedrun.models import build_model
from fedrun.registry import DATASETS
from fedrun.task import load_task

from . import oracle
from .conftest import REPO, spawn_ranks, torchrun

pytestmark = pytest.mark.slow

ORACLE_ARGS = [
    "--rounds",
    "3",
    "--num-clients",
    "6",
    "--clients-per-round",
    "2",
    "--model",
    "mlp",
    "--hidden",
    "8",
    "--lr",
    "0.02",
    "--momentum",
    "0.9",
    "--weight-decay",
    "0.001",
    "--batch-size",
    "16",
    "--local-epochs",
    "2",
    "--seed",
    "3",
]


def oracle_fedavg(argv: list[str]) -> tuple[dict[str, torch.Tensor], float]:
    """The oracle on the job's data and initial model (fedrun's task code builds both; the
    training and averaging are the oracle's own); returns its final state and central loss."""
    cfg = checks.validate(parse_args(argv))
    task = load_task(cfg)
    cpu = torch.device("cpu")
    data = {
        c: (d.train.x, d.train.y)
        for c, d in task.client_data(list(range(cfg.fed.num_clients)), cpu).items()
    }
    model = task.model(cpu)
    final = oracle.fedavg(cfg, data, model, task.loss_fn)
    model.load_state_dict(final)
    central = task.central_data(cpu)
    with torch.no_grad():
        loss = task.loss_fn(model.eval()(central.x), central.y).item()
    return final, loss


def _metrics(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# float32 on both sides; the only difference is rounding in the average (fedrun: w + sum of
# weighted updates / total weight; the oracle: sum of weighted models / total weight), ~6e-8 after
# one round. Local SGD then carries that difference into later rounds: here (lr 0.02, momentum
# 0.9, up to 320 steps per client) it stays ~6e-7 after three rounds; at lr 0.05 it grew to 4e-3,
# a property of the training map, not of the aggregation. 1e-5 is the bound.
TOL = 1e-5


@pytest.mark.parametrize("nproc", [2, 4], ids=["one-worker", "idle-workers"])
def test_matches_single_process_oracle(tmp_path, nproc):
    out = tmp_path / "run"
    res = torchrun(nproc, *ORACLE_ARGS, out=out)
    assert res.returncode == 0, res.stderr
    expected, central_loss = oracle_fedavg(ORACLE_ARGS)
    assert oracle.max_diff(res.model(), expected) < TOL
    rows = _metrics(out)
    assert [r["round"] for r in rows] == [1, 2, 3]
    assert math.isclose(rows[-1]["central_loss"], central_loss, rel_tol=1e-5)
    assert all(r["clients"] == 2 for r in rows)


VARIANTS = {
    # BatchNorm buffers averaged and counters summed, a step budget across passes, uniform
    # client weights, a server step past the average, half the clients evaluated
    "batchnorm-steps-uniform-server-lr": (
        "--model tests.userpkg.algorithms:bn_mlp --local-steps 7 --weighting uniform "
        "--server-lr 1.5 --batch-size 16 --eval-fraction 0.5 --rounds 3 --num-clients 8 "
        "--clients-per-round 4 --lr 0.02"
    ),
    # a pooled dataset under label skew, dropout drawn from the client's own global-RNG stream
    "digits-dirichlet-dropout": (
        "--dataset digits --partition dirichlet --dirichlet-alpha 0.5 --num-clients 6 "
        "--clients-per-round 3 --model tests.userpkg.algorithms:dropout_mlp --rounds 3 "
        "--lr 0.05 --server-lr 0.7"
    ),
    # FedProx's proximal term (the oracle writes the paper's objective into its loss)
    "fedprox-mu": (
        "--strategy fedprox --mu 0.5 --num-clients 6 --clients-per-round 3 --model mlp "
        "--hidden 8 --local-epochs 2 --momentum 0.5 --rounds 3 --lr 0.02"
    ),
    # shards, momentum, a step budget, every incomplete last batch dropped
    "digits-shards-momentum": (
        "--dataset digits --partition shards --num-clients 6 --clients-per-round 4 "
        "--model mlp --hidden 16 --local-steps 5 --momentum 0.9 --drop-last all --rounds 3 "
        "--lr 0.02"
    ),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_match_the_oracle(tmp_path, variant):
    argv = VARIANTS[variant].split()
    res = torchrun(3, *argv, out=tmp_path / "run")
    assert res.returncode == 0, res.stderr
    expected, central_loss = oracle_fedavg(argv)
    assert oracle.max_diff(res.model(), expected) < TOL
    assert math.isclose(_metrics(tmp_path / "run")[-1]["central_loss"], central_loss, rel_tol=1e-4)
    if "uniform" in argv:  # the weighting matters here: examples-weighted is another model
        other, _ = oracle_fedavg([*argv, "--weighting", "examples"])
        assert oracle.max_diff(other, expected) > 100 * TOL


def test_outputs_and_console(tmp_path):
    out = tmp_path / "run"
    res = torchrun(3, "--rounds", "4", "--eval-every", "2", out=out)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("fedrun | 3 ranks: server + 2 worker(s), gloo on cpu")
    rounds = [ln for ln in lines if ln.startswith("round ")]
    assert len(rounds) == 4 and "train loss" in rounds[0] and "central loss" in rounds[1]
    assert lines[-1].startswith("done: 4 rounds")
    rows = _metrics(out)
    assert [("central_acc" in r) for r in rows] == [False, True, False, True]
    assert {"train_loss", "clients", "examples", "seconds"} <= rows[0].keys()
    assert all(0 < r["train_seconds"] <= r["seconds"] for r in rows)
    assert 0 <= rows[-1]["central_acc"] <= 1 and 0 <= rows[-1]["fed_acc"] <= 1
    # the resolved config reloads to the same job
    cfg = parse_args(["--config", str(out / "config.toml")])
    assert cfg.fed.rounds == 4 and cfg.eval.eval_every == 2
    assert cfg.runtime.out == "" and cfg.runtime.resume == ""  # a rerun starts a fresh run dir
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 4 and summary["best_metric"] == "central_acc"
    assert summary["final"]["central_acc"] == rows[-1]["central_acc"]
    assert 0 < summary["startup_s"] < res.seconds
    # final_model.pt loads strictly into a fresh model
    checks.validate(cfg)
    model = build_model(cfg, DATASETS.load("synthetic").info(cfg))
    model.load_state_dict(res.model())


def test_default_job_learns(tmp_path):
    out = tmp_path / "run"
    res = torchrun(3, out=out)  # no flags: the README's job
    assert res.returncode == 0, res.stderr
    rows = _metrics(out)
    assert len(rows) == 100
    # logistic regression on Synthetic(1,1): chance is ~0.1; FedProx reports ~0.8
    assert rows[-1]["central_acc"] > 0.75 and rows[-1]["central_loss"] < rows[0]["central_loss"]


DET_ARGS = [
    "--rounds",
    "4",
    "--num-clients",
    "20",
    "--clients-per-round",
    "7",
    "--model",
    "mlp",
    "--momentum",
    "0.5",
]


def test_deterministic_and_independent_of_worker_count(tmp_path):
    a = torchrun(3, *DET_ARGS, out=tmp_path / "a")
    b = torchrun(3, *DET_ARGS, out=tmp_path / "b")
    c = torchrun(5, *DET_ARGS, out=tmp_path / "c")
    for r in (a, b, c):
        assert r.returncode == 0, r.stderr
    ma, mb, mc = a.model(), b.model(), c.model()
    assert all(torch.equal(ma[k], mb[k]) for k in ma)  # bitwise, same world size
    assert oracle.max_diff(ma, mc) < TOL  # 2 vs 4 workers: only the summation order differs


# --- failures: every rank exits non-zero, quickly, with one line -----------------------------


def test_bad_value_fails_fast_on_every_rank(tmp_path):
    res = torchrun(3, "--rounds", "0", out=tmp_path / "run", timeout=60)
    assert res.returncode != 0
    ours = [ln for ln in res.stderr.splitlines() if ln.startswith("fedrun: error:")]
    assert ours == [
        "fedrun: error: fed.rounds (--rounds): must be >= 1, got 0; pass a positive integer"
    ]
    assert "traceback : fedrun: error: fed.rounds" in res.stderr  # torchrun's summary: the cause
    assert "fedrun/" not in res.stderr  # no traceback through fedrun's code
    assert not (tmp_path / "run").exists()
    # without torchrun's agent to kill the others, every rank still exits on its own, at once
    results, seconds = spawn_ranks(3, "--lr", "-1")
    assert [r.returncode for r in results] == [2, 2, 2]
    assert seconds < 30
    assert "train.lr (--lr): must be > 0" in results[0].stderr


def test_unknown_flag_suggests(tmp_path):
    res = torchrun(2, "--round", "3", timeout=60)
    assert res.returncode != 0
    assert "unknown flag --round; did you mean --rounds?" in res.stderr


def test_not_under_torchrun_or_world_size_one():
    p = subprocess.run(
        [sys.executable, "-m", "fedrun.main"], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "fedrun: error: launch: not started by torchrun (no RANK); "
        "launch with: torchrun --nproc_per_node=3 -m fedrun.main [flags]"
    ]
    res = torchrun(1, timeout=60)
    assert res.returncode != 0
    assert "world size 1: fedrun needs a server rank and at least one client worker" in res.stderr


def test_existing_run_dir_is_refused_on_every_rank(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("precious\n")
    results, seconds = spawn_ranks(3, "--rounds", "1", "--out", str(out))
    # the server fails its set-up; the handshake tells the workers, which exit too
    assert [r.returncode for r in results] == [2, 1, 1] and seconds < 30
    assert "already holds files; pass --overwrite, --resume auto or another --out" in (
        results[0].stderr
    )
    assert all(r.stderr == "" for r in results[1:])
    assert (out / "metrics.jsonl").read_text() == "precious\n"
    res = torchrun(3, "--rounds", "1", "--overwrite", out=out)
    assert res.returncode == 0, res.stderr
    assert len(_metrics(out)) == 1


def test_help_without_torchrun_and_once_under_it():
    p = subprocess.run(
        [sys.executable, "-m", "fedrun.main", "--help"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert p.returncode == 0 and "--clients-per-round" in p.stdout
    res = torchrun(3, "--help", timeout=60)
    assert res.returncode == 0 and res.stdout.count("usage: torchrun") == 1


def test_fedprox_with_mu_zero_is_fedavg_bit_for_bit(tmp_path):
    fedavg = torchrun(3, *ORACLE_ARGS, out=tmp_path / "a")
    fedprox = torchrun(3, *ORACLE_ARGS, "--strategy", "fedprox", out=tmp_path / "b")
    assert fedavg.returncode == 0 and fedprox.returncode == 0, fedprox.stderr
    a, b = fedavg.model(), fedprox.model()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
