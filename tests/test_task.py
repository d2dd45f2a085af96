"""Bring-your-own-code: a user's task module, as the README documents it."""

import json
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedrun import checks
from fedrun.config import parse_args
from fedrun.data import Split
from fedrun.errors import ConfigError
from fedrun.seeding import derive_seed
from fedrun.task import load_task

from . import oracle
from .conftest import REPO, spawn_ranks, torchrun
from .userpkg import tasks


@pytest.mark.parametrize(
    ("task", "pattern"),
    [
        ("tests.userpkg.nothere:task", "no module named 'tests.userpkg.nothere'"),
        ("tests.userpkg.broken", "importing tests.userpkg.broken failed: ImportError"),
        ("tests.userpkg.tasks:missing", "has no attribute 'missing'"),
        ("tests.userpkg.tasks:NoData", "has no client_data()"),
    ],
)
def test_bad_tasks_fail_validation_with_one_line(task, pattern):
    with pytest.raises(ConfigError, match=pattern) as e:
        checks.validate(parse_args(["--task", task]))
    assert str(e.value).startswith("data.task (--task)") and "\n" not in str(e.value)


def test_task_loading_rules():
    with pytest.raises(ConfigError, match="loss 'hinge' is unknown"):
        load_task(parse_args(["--task", "tests.userpkg.tasks:BadLoss"]))
    with pytest.raises(ConfigError, match="train.local_steps"):
        load_task(parse_args(["--task", "tests.userpkg.tasks:Exploding", "--local-steps", "3"]))
    task = load_task(parse_args(["--task", "tests.userpkg.tasks:SeedStyle"]))  # a class
    assert task.kind == "classification" and task.train_fn and task.eval_fn
    data = task.client_data([0], torch.device("cpu"))[0]
    assert isinstance(data.train, tasks.Pairs)  # a generic Dataset stays one
    fast = load_task(parse_args(["--task", "tests.userpkg.tasks:tensors"]))
    assert isinstance(fast.client_data([0], torch.device("cpu"))[0].train, Split)  # fast path


TASK_ARGS = [
    "--task", "tests.userpkg.tasks:tensors", "--num-clients", "5", "--clients-per-round", "5",
    "--rounds", "3", "--lr", "0.1", "--batch-size", "8", "--local-epochs", "2",
]  # fmt: skip


@pytest.mark.slow
def test_user_task_with_an_empty_client_matches_the_oracle(tmp_path):
    out = tmp_path / "run"
    res = torchrun(3, *TASK_ARGS, out=out)
    assert res.returncode == 0, res.stderr
    cfg = parse_args(TASK_ARGS)
    data = {}
    for c in range(5):
        tr, _ = tasks.tensors.client_data(c, 5)
        data[c] = tr.tensors
    torch.manual_seed(derive_seed(cfg.fed.seed, "init"))
    model = tasks.tensors.model()
    expected = oracle.fedavg(cfg, data, model, F.cross_entropy)
    assert oracle.max_diff(res.model(), expected) < 1e-5  # float32 rounding only
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["examples"] == sum(tasks.SIZES) and rows[0]["clients"] == 5
    assert all(v == v for r in rows for v in r.values() if isinstance(v, float))  # no NaN
    part = json.loads((out / "partition.json").read_text())
    assert part["train_examples"] == tasks.SIZES


@pytest.mark.slow
def test_round_without_any_data_stops_every_rank():
    results, seconds = spawn_ranks(
        3, "--task", "tests.userpkg.tasks:Empty", "--num-clients", "4", "--clients-per-round", "4"
    )
    assert [r.returncode for r in results] == [1, 1, 1] and seconds < 30
    assert "round 1: the 4 sampled clients hold no training examples (total weight 0)" in (
        results[0].stderr
    )
    assert results[1].stderr == results[2].stderr == ""


@pytest.mark.slow
def test_exception_in_user_train_stops_every_rank_and_shows_the_cause_once():
    results, seconds = spawn_ranks(
        3,
        "--task",
        "tests.userpkg.tasks:Exploding",
        "--num-clients",
        "4",
        "--clients-per-round",
        "4",
    )
    assert all(r.returncode != 0 for r in results) and seconds < 30
    everything = "".join(r.stderr + r.stdout for r in results)
    assert everything.count("RuntimeError: boom in the user's train") == 2  # one per worker
    assert "round 1: 2 client worker(s) failed" in results[0].stderr


@pytest.mark.slow
def test_generic_datasets_and_the_tutorial_signatures(tmp_path):
    out = tmp_path / "run"
    args = ["--task", "tests.userpkg.tasks:SeedStyle", "--num-clients", "4", "--rounds", "3"]
    args += ["--clients-per-round", "4"]
    res = torchrun(3, *args, out=out)
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["fed_loss"] == pytest.approx(0.25)  # the user's evaluate, averaged
    # fed_acc is the user's accuracy per client, averaged by test examples: recompute it
    model = tasks.SeedStyle().model()
    model.load_state_dict(res.model())
    correct = total = 0
    for c in range(4):
        test = tasks.SeedStyle().client_data(c, 4)[1]
        correct += (model(test.x).argmax(1) == test.y).sum().item()
        total += len(test)
    assert rows[-1]["fed_acc"] == pytest.approx(correct / total)
    assert rows[-1]["train_loss"] is None  # its train returns no loss
    assert "central_loss" not in rows[-1]  # no server_data


@pytest.mark.slow
def test_the_readme_example_task_runs_as_documented(tmp_path):
    readme = (REPO / "README.md").read_text()
    code = readme.split("```python\n# mytask.py")[1].split("```")[0]
    command = code.split("->")[1].split("\n")[0].split()
    (tmp_path / "mytask.py").write_text("# mytask.py" + code)
    assert command[:4] == ["torchrun", "--nproc_per_node=3", "-m", "fedrun.main"]
    res = torchrun(3, *command[4:], out=tmp_path / "run", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert rows[-1]["central_acc"] > 0.9 and rows[0]["examples"] == 400  # separable by design


def test_a_user_train_runs_in_train_mode_and_config_is_not_mutated(tmp_path):
    seen = []

    class Probe(tasks.Tensors):
        def train(self, model, loader, epochs, device):
            seen.append(model.training)

    import fedrun.task as task_mod

    cfg = parse_args(["--task", "tests.userpkg.tasks:tensors"])
    task = task_mod._user_task(cfg)
    task.train_fn = Probe().train
    model = tasks.tensors.model().eval()  # as evaluation leaves it
    data = task.client_data([0], torch.device("cpu"))[0].train
    task.train(model, None, data, cfg, torch.Generator(), torch.device("cpu"))
    assert seen == [True]


def _global_rng_states():
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def _same_states(a, b) -> bool:
    return torch.equal(a[0], b[0]) and (a[1] == b[1]).all() and a[2] == b[2]


def test_user_data_drawn_from_global_rngs_is_seeded_per_client_and_kept_from_the_caller():
    """client_data and server_data run under their own derived seeds: a client gets the same
    data on every run whichever worker hosts it (alone or with others, whatever the global RNGs
    held), and the caller's global RNGs are left as they were."""
    args = ["--task", "tests.userpkg.tasks:GlobalRandom", "--num-clients", "3"]
    task = load_task(parse_args(args))
    cpu = torch.device("cpu")
    torch.manual_seed(1)
    before = _global_rng_states()
    together = task.client_data([0, 1, 2], cpu)
    central = task.central_data(cpu)
    assert _same_states(before, _global_rng_states())
    torch.manual_seed(2), np.random.seed(2), random.seed(2)
    alone = task.client_data([2], cpu)
    assert torch.equal(alone[2].train.x, together[2].train.x)
    assert not torch.equal(together[1].train.x, together[2].train.x)  # a stream per client
    assert torch.equal(task.central_data(cpu).x, central.x)
    other_seed = load_task(parse_args([*args, "--seed", "7"]))
    assert not torch.equal(other_seed.client_data([2], cpu)[2].train.x, together[2].train.x)


def test_the_task_object_is_built_once_per_rank():
    cfg = checks.validate(parse_args(["--task", "tests.userpkg.tasks:Counted"]))
    tasks.Counted.made = 0
    load_task(cfg)
    assert tasks.Counted.made == 1  # validation looked at the class without building it


def test_configure_may_not_change_the_agreed_config():
    cfg = checks.validate(parse_args(["--task", "tests.userpkg.tasks:Reconfigures"]))
    with pytest.raises(
        ConfigError, match=r"configure\(\) changed train.lr \(--lr\) from 0.05 to 0.5"
    ):
        load_task(cfg)


@pytest.mark.slow
def test_a_custom_evaluate_is_weighted_by_each_clients_test_examples(tmp_path):
    """Client c holds 5 (c + 1) test examples and reports loss c: weighted, 2.0; unweighted,
    1.5 (tests/userpkg/tasks.py:UnequalTests)."""
    res = torchrun(
        3, "--task", "tests.userpkg.tasks:UnequalTests", "--num-clients", "4",
        "--clients-per-round", "4", "--rounds", "1", out=tmp_path / "run",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["fed_examples"] == 5 * (1 + 2 + 3 + 4)
    assert row["fed_loss"] == pytest.approx(2.0) and row["fed_acc"] == 1.0
