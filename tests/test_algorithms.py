"""The algorithm seams end to end (torchrun, gloo): a user's strategy and stage named by path,
the per-client state store across resume and re-hosting, and a BatchNorm model's buffers."""

from __future__ import annotations

import json
import math

import pytest
import torch

from fedrun import checks
from fedrun.config import parse_args, resolve_clients_per_round
from fedrun.errors import ConfigError
from fedrun.sampling import sample_clients

from .conftest import torchrun

pytestmark = pytest.mark.slow

STATEFUL = (
    "--strategy tests.userpkg.algorithms:ClientMomentum --rounds 4 --checkpoint-every 2 "
    "--num-clients 6 --clients-per-round 6 --model mlp --hidden 8 --lr 0.02"
).split()


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _killed_run_equals(full, argv, out, fault: str, resumed: str) -> None:
    """The job with `fault` SIGKILLing a rank under torchrun --max-restarts=1 resumes (the
    `resumed` line) and ends on the bits of the uninterrupted run `full`."""
    killed = torchrun(3, *argv, out=out, env={"FEDRUN_FAULT": fault}, extra=["--max-restarts=1"])
    assert killed.returncode == 0, killed.stderr
    assert resumed in killed.stdout
    assert _same(killed.model(), full.model())


def _max_diff(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_stateful_user_strategy_resumes_bitwise_and_rehosts(tmp_path):
    full = torchrun(3, *STATEFUL, out=tmp_path / "full")
    assert full.returncode == 0, full.stderr
    states = tmp_path / "full" / "checkpoints" / "round_000004.clients"
    assert sorted(p.name for p in states.iterdir()) == ["rank1.pt", "rank2.pt"]
    hosted = {p.name: sorted(torch.load(p, weights_only=True)["clients"]) for p in states.iterdir()}
    assert hosted == {"rank1.pt": [0, 2, 4], "rank2.pt": [1, 3, 5]}  # every client's m_k

    # a worker killed mid-round 3: torchrun restarts the group, the workers reload round 2's
    # per-client state, and the run ends on the same bits
    _killed_run_equals(full, STATEFUL, tmp_path / "killed", "train:2:3", "resumed after round 2")

    part = tmp_path / "part"
    first = torchrun(3, *STATEFUL, "--rounds", "2", out=part)
    assert first.returncode == 0, first.stderr
    again = torchrun(3, *STATEFUL, "--resume", "auto", out=part)
    assert again.returncode == 0, again.stderr
    assert "resumed after round 2" in again.stdout
    assert _same(again.model(), full.model())
    # rotation (keep 2) removed nothing yet; a third checkpoint would take round 2's state along
    assert (part / "checkpoints" / "round_000002.clients").is_dir()

    # three workers now: each reads every rank's file and keeps its own clients' m_k
    moved = torchrun(
        4, *STATEFUL, "--resume", str(part / "checkpoints" / "round_000002.pt"),
        out=tmp_path / "moved",
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    # three slots summed in another order than gloo's two: float rounding only
    assert _max_diff(moved.model(), full.model()) < 1e-5


def test_user_stage_by_path_equals_the_server_lr_it_stands_for(tmp_path):
    job = "--rounds 3 --model mlp --hidden 8 --lr 0.02".split()
    staged = torchrun(3, *job, "--stages", "tests.userpkg.algorithms:Halve", out=tmp_path / "a")
    assert staged.returncode == 0, staged.stderr
    half = torchrun(3, *job, "--server-lr", "0.5", out=tmp_path / "b")
    assert half.returncode == 0, half.stderr
    # (1/A) sum a_k (d_k / 2) against (0.5/A) sum a_k d_k: rounding apart, the same step
    assert _max_diff(staged.model(), half.model()) < 1e-5


def test_a_strategy_that_is_not_one_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="is not a subclass of fedrun.strategies.base.Strategy"):
        checks.validate(parse_args(["--strategy", "tests.userpkg.algorithms:NotAStrategy"]))


BN = (
    "--model tests.userpkg.algorithms:bn_mlp --server-lr 2 --local-epochs 3 --rounds 4 "
    "--num-clients 8 --clients-per-round 4 --batch-size 16 --checkpoint-every 2 --lr 0.05"
).split()


def _batches_trained(out, argv) -> int:
    """num_batches_tracked by hand: every sampled client with data adds
    ceil(n_k / batch) x epochs batches in every round."""
    cfg = parse_args(argv)
    n = json.loads((out / "partition.json").read_text())["train_examples"]
    k = resolve_clients_per_round(cfg.fed.clients_per_round, cfg.fed.num_clients)
    return sum(
        math.ceil(n[c] / cfg.train.batch_size) * cfg.train.local_epochs
        for r in range(1, cfg.fed.rounds + 1)
        for c in sample_clients(cfg.fed.num_clients, k, cfg.fed.seed, r)
    )


def test_batchnorm_buffers_are_averaged_and_counters_summed(tmp_path):
    two = torchrun(3, *BN, out=tmp_path / "two")
    assert two.returncode == 0, two.stderr
    model = two.model()
    # --server-lr 2 moves the parameters; the running variance is the clients' average
    assert (model["2.running_var"] > 0).all()
    rows = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["central_loss"]) for r in rows)
    assert model["2.num_batches_tracked"].item() == _batches_trained(tmp_path / "two", BN)

    # four workers host the clients otherwise: the same counters, exactly. (The floats agree to
    # rounding only, and --server-lr 2 with 3 local epochs amplifies that: 3e-5 at lr 1 grew to
    # 3e-2 here, measured; FedAvg's 2-vs-4-worker bound is tests/test_e2e.py's.)
    four = torchrun(5, *BN, out=tmp_path / "four")
    assert four.returncode == 0, four.stderr
    assert torch.equal(four.model()["2.num_batches_tracked"], model["2.num_batches_tracked"])
    assert (four.model()["2.running_var"] > 0).all()

    part = tmp_path / "part"
    assert torchrun(3, *BN, "--rounds", "2", out=part).returncode == 0
    again = torchrun(3, *BN, "--resume", "auto", out=part)
    assert again.returncode == 0, again.stderr
    assert _same(again.model(), model)


ONE_LEFT = (
    "--dataset fake --fake-shape 20 --fake-samples 33 --fake-test-samples 40 "
    "--model tests.userpkg.algorithms:bn_mlp --batch-size 32 --num-clients 4 "
    "--clients-per-round 4 --rounds 2"
).split()


def test_a_one_sample_last_batch_never_reaches_batchnorm(tmp_path):
    """33 examples at batch 32 leave one sample per pass: --drop-last single (the default)
    drops that batch; keeping it (none) is what crashed every such run."""
    ok = torchrun(3, *ONE_LEFT, out=tmp_path / "ok")
    assert ok.returncode == 0, ok.stderr
    rows = [json.loads(x) for x in (tmp_path / "ok" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["examples"] == 4 * 33 for r in rows)
    # one batch of 32 per client and round: the counters say so
    assert ok.model()["2.num_batches_tracked"].item() == 2 * 4
    kept = torchrun(3, *ONE_LEFT, "--drop-last", "none", out=tmp_path / "kept")
    assert kept.returncode != 0
    assert "Expected more than 1 value per channel when training" in kept.stderr


def test_the_server_checks_every_sampled_client_was_handled(tmp_path):
    res = torchrun(
        3, "--stages", "tests.userpkg.algorithms:MiscountsClients", "--rounds", "2",
        out=tmp_path / "run",
    )  # fmt: skip
    assert res.returncode != 0
    assert "round 1: the workers handled 20 clients, 10 were sampled" in res.stderr


ADAM = (
    "--strategy fedadam --server-lr 0.03 --rounds 6 --checkpoint-every 2 --num-clients 8 "
    "--clients-per-round 4 --model mlp --hidden 8"
).split()


def test_fedadam_state_survives_kill_9_bitwise(tmp_path):
    """The moments m and v and the step count are checkpointed: a worker SIGKILLed in round 5
    under torchrun --max-restarts ends on the uninterrupted run's bits."""
    full = torchrun(3, *ADAM, out=tmp_path / "full")
    assert full.returncode == 0, full.stderr
    _killed_run_equals(full, ADAM, tmp_path / "killed", "train:2:5", "resumed after round 4")
    rows = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["central_loss"] < rows[0]["central_loss"]  # it does optimise
