"""Reliability: bad updates, bad input on every rank, stuck ranks. Each run under a timeout."""

import json
import math
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from fedrun import comm
from fedrun.config import parse_args
from fedrun.errors import JoinTimeout
from fedrun.seeding import derive_seed

from . import oracle
from .conftest import spawn_ranks, torchrun
from .userpkg import tasks

pytestmark = pytest.mark.slow

NAN_TASK = [
    "--task", "tests.userpkg.tasks:NaNClient", "--num-clients", "5", "--clients-per-round", "5",
    "--rounds", "3", "--lr", "0.1", "--batch-size", "8",
]  # fmt: skip


def test_nan_update_fails_naming_the_client():
    results, seconds = spawn_ranks(3, *NAN_TASK)
    assert all(r.returncode != 0 for r in results) and seconds < 30
    everything = "".join(r.stderr for r in results)
    assert "round 1: client 1 sent a bad update (NaN or Inf)" in everything
    assert "Traceback" not in everything  # a diagnosed failure is one line
    assert "round 1: 1 client worker(s) failed" in results[0].stderr


def test_nan_update_skipped_equals_fedavg_without_that_client(tmp_path):
    out = tmp_path / "run"
    res = torchrun(3, *NAN_TASK, "--on-bad-update", "skip", out=out)
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in rows] == [1, 1, 1]
    cfg = parse_args(NAN_TASK)
    data = {c: tasks.NaNClient().client_data(c, 5)[0].tensors for c in range(5)}
    data[1] = (data[1][0][:0], data[1][1][:0])  # the skipped client, as if it had no data
    torch.manual_seed(derive_seed(cfg.fed.seed, "init"))
    expected = oracle.fedavg(cfg, data, tasks.NaNClient().model(), F.cross_entropy)
    assert oracle.max_diff(res.model(), expected) < 1e-5


def test_norm_bound_drops_everything_then_stops():
    results, _ = spawn_ranks(3, *NAN_TASK, "--max-update-norm", "1e-9", "--on-bad-update", "skip")
    assert all(r.returncode != 0 for r in results)
    assert "round 1: every update was dropped as bad (4 clients)" in results[0].stderr


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["--rounds", "-2"], "fed.rounds (--rounds): must be >= 1", 2),
        (["--device", "cuda"], "runtime.device (--device): cuda requested but no GPU", 2),
        (["--backend", "nccl"], "runtime.backend (--backend): nccl needs a GPU per rank", 2),
        (["--out", "/proc/fedrun-run"], "runtime.out (--out): cannot write to /proc/fedrun-run", 2),
        (["--task", "tests.userpkg.nothere"], "data.task (--task): no module named", 2),
        (
            ["--task", "tests.userpkg.tasks:WrongOutput", "--num-clients", "4",
             "--clients-per-round", "4"],
            "data.task (--task): the model's output (shape (8, 3)) does not fit",
            2,
        ),
        (["--dataset", "mnist", "--data-root", "/nonexistent"], "MNIST files not found", 2),
        (["--task", "tests.userpkg.tasks:BadCentral", "--num-clients", "4",
          "--clients-per-round", "4"], "does not fit the server's central set's inputs", 2),
        (["--model", "cnn"], "cnn needs square images of at least 16x16", 2),
        (["--model", "tests.userpkg.factories:tiny"],
         "model.model (--model): the model has uninitialised lazy modules (LazyLinear)", 2),
        (["--timeout", "inf"], "runtime.timeout (--timeout): must be a finite number", 2),
        (["--partition", "shards", "--dataset", "digits", "--num-clients", "1000",
          "--shards-per-client", "2", "--clients-per-round", "10"], "2000 shards requested", 2),
    ],
)  # fmt: skip
def test_bad_input_stops_every_rank_in_seconds_with_one_line(args, message, code):
    results, seconds = spawn_ranks(3, *args)
    assert seconds < 30
    assert all(r.returncode != 0 for r in results)
    lines = [ln for r in results for ln in r.stderr.splitlines() if ln.startswith("fedrun: error:")]
    assert len(lines) == 1, lines  # once, whichever rank found it
    assert message in lines[0], lines
    assert "Traceback" not in "".join(r.stderr for r in results)
    assert code in [r.returncode for r in results]


def test_stuck_worker_is_named_after_the_timeout(tmp_path):
    res = torchrun(
        3, "--task", "tests.userpkg.tasks:Sleepy", "--num-clients", "5", "--clients-per-round",
        "5", "--timeout", "8", out=tmp_path / "run", timeout=90,
    )  # fmt: skip
    assert res.returncode != 0
    assert res.seconds < 60  # 8 s timeout + start-up, not the default 30 minutes
    # client 3 lives on worker rank 1 + 3 % 2 = 2
    assert "train round 1: worker rank(s) [2] did not reach the reduce within --timeout 8 s" in (
        res.stderr
    )


@pytest.mark.parametrize("stuck", [2, 0])
def test_rank_stuck_before_joining_is_named_after_the_join_timeout(tmp_path, stuck):
    """A rank that hangs before joining (alive, so its launcher does not notice) stops the job
    after --join-timeout, named once by the lowest rank that joined, instead of after
    --timeout (30 minutes by default)."""
    res = torchrun(3, "--rounds", "2", "--join-timeout", "3", out=tmp_path / "run", timeout=60,
                   env={"FEDRUN_FAULT": f"join:{stuck}:0"})  # fmt: skip
    assert res.returncode != 0
    assert res.seconds < 30  # 3 s + start-up and teardown
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("fedrun: error:")]
    reporter = 1 if stuck == 0 else 0
    assert len(lines) == 1, lines
    assert re.fullmatch(
        rf"fedrun: error: rank {reporter}: start-up: rank\(s\) \[{stuck}\] did not join within "
        r"3 s \(runtime.join_timeout, --join-timeout\); such a rank is stuck or cannot reach "
        r"\S+:\d+: see its output",
        lines[0],
    ), lines[0]


class _JoinStore:
    """The store calls wait_for_all_ranks makes; the other ranks join after `late` polls."""

    def __init__(self, world: int, late: int) -> None:
        self.world, self.late, self.polls = world, late, 0
        self.keys: set[str] = set()

    def set(self, key, value):
        self.keys.add(key)

    def add(self, key, n):
        if n == 0:
            self.polls += 1
        return self.world if self.polls > self.late else 1

    def check(self, keys):
        return all(k in self.keys for k in keys)


@pytest.fixture
def pauses(monkeypatch) -> list[float]:
    """A fake clock for fedrun.comm (only: the time module itself stays as it is): its sleeps
    are recorded (and returned), not slept."""
    slept: list[float] = []
    monkeypatch.setattr(
        comm, "time", SimpleNamespace(monotonic=lambda: sum(slept), sleep=slept.append)
    )
    return slept


@pytest.mark.parametrize(
    ("world", "late", "first"),
    [(3, 0, 0.005), (3, 3, 0.005), (3, 2000, 0.005), (64, 300, 0.032), (512, 100, 0.1)],
)
def test_join_polls_fast_at_first_then_every_100_ms(pauses, world, late, first):
    """Ranks of one node arrive within ~0.1 s of each other: the wait notices the last one
    within 5 ms (a doubling backoff to 0.1 s cost every start ~0.08 s); a larger job polls
    less often, all its ranks together at most 2000 times a second; after 5 s (other nodes
    still starting) every rank polls every 0.1 s."""
    env = comm.LaunchEnv(0, world, 0, world, "127.0.0.1", 1, 0)
    comm.wait_for_all_ranks(_JoinStore(world, late), env, 300)
    assert len(pauses) == late
    fast = [p for i, p in enumerate(pauses) if sum(pauses[:i]) < 5]  # the clock as it ran
    assert fast == [first] * len(fast)
    expected = math.ceil(5 / first)
    assert len(fast) == late if late < expected else abs(len(fast) - expected) <= 1  # float sums
    assert pauses[len(fast) :] == [0.1] * (late - len(fast))


def test_join_wait_names_the_missing_ranks_when_time_is_up(pauses):
    store = _JoinStore(3, late=10**9)
    store.keys = {"joined/0", "joined/2"}
    env = comm.LaunchEnv(2, 3, 2, 3, "10.0.0.1", 29500, 0)
    with pytest.raises(JoinTimeout, match=r"rank 0: start-up: rank\(s\) \[1\] did not join") as e:
        comm.wait_for_all_ranks(store, env, 7)
    assert not e.value.reporter  # rank 0 reports it; this is rank 2
    assert 7 <= sum(pauses) <= 7.1 + 1e-9
