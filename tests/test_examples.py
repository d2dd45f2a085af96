"""Each seed tutorial runs as a fedrun example, on tiny sizes, with its documented command."""

import json

import pytest
import torch

from examples import pysyft_toy
from examples.flower_quickstart import cifar
from fedrun.seeding import derive_seed

from .conftest import torchrun
from .data.test_datasets import write_cifar

pytestmark = pytest.mark.slow


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_flower_quickstart(tmp_path):
    write_cifar(tmp_path / "data", n_train=200, n_test=40)
    out = tmp_path / "run"
    res = torchrun(
        3, "--config", "examples/flower_quickstart/job.toml", "--data-root", str(tmp_path / "data"),
        "--eval-batch-size", "4", out=out,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = _rows(out)
    assert [r["round"] for r in rows] == [1, 2, 3] and all(r["clients"] == 2 for r in rows)
    assert rows[0]["examples"] == 180  # two halves of 200, minus 10% local test splits
    assert rows[-1]["central_loss"] is not None and 0 <= rows[-1]["central_acc"] <= 1
    # a mean per example (about ln 10 for a barely trained net): the tutorial's sum over the
    # 10 test batches was 10x that
    assert all(r["central_loss"] < 3 and r["fed_loss"] < 3 for r in rows)
    net = cifar.Net()
    net.load_state_dict(res.model())  # the tutorial's own Net takes the result


def test_flower_quickstart_offline_without_data(tmp_path):
    res = torchrun(
        3,
        "--config",
        "examples/flower_quickstart/job.toml",
        "--data-root",
        str(tmp_path),
        timeout=60,
    )
    assert res.returncode != 0
    assert f"CIFAR10 files not found in {tmp_path} (looked in" in res.stderr
    assert "; pass --download" in res.stderr


PYSYFT = (
    "--task examples.pysyft_toy:task --num-clients 2 --clients-per-round 2 --rounds 10 "
    "--lr 0.2 --batch-size 2 --local-steps 1"
).split()


def test_pysyft_toy_equals_full_batch_gradient_descent(tmp_path):
    """With one full-batch step per client and equal client sizes, FedAvg is gradient descent
    on the mean loss over all four points (FedSGD, McMahan et al. 2017), from the same init."""
    out = tmp_path / "run"
    res = torchrun(3, *PYSYFT, out=out)
    assert res.returncode == 0, res.stderr
    torch.manual_seed(derive_seed(0, "init"))
    model = pysyft_toy.task.model()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    for _ in range(10):
        opt.zero_grad()
        ((model(pysyft_toy.DATA) - pysyft_toy.TARGET) ** 2).mean().backward()
        opt.step()
    got = res.model()
    assert torch.allclose(got["weight"], model.weight.detach(), atol=1e-6)
    assert torch.allclose(got["bias"], model.bias.detach(), atol=1e-6)
    rows = _rows(out)
    assert rows[-1]["central_loss"] < rows[0]["central_loss"] / 3


@pytest.mark.parametrize(
    ("task", "weighting", "max_loss"),
    [
        ("basic", "uniform", 0.05),  # the tutorial: plain mean of the five models
        ("different_data", "uniform", 0.2),  # exercise 1: different datasets per client
        ("different_data", "examples", 0.2),  # exercise 2: weighted by client data size
        ("non_iid", "examples", 0.2),  # exercise 3: non-IID data
    ],
)
def test_pytorch_tutorial_and_exercises(tmp_path, task, weighting, max_loss):
    out = tmp_path / "run"
    res = torchrun(
        3, "--config", "examples/pytorch_tutorial/job.toml",
        "--task", f"examples.pytorch_tutorial.task:{task}", "--weighting", weighting, out=out,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = _rows(out)
    assert rows[-1]["central_loss"] < max_loss < rows[0]["central_loss"]
    assert rows[0]["clients"] == 5
