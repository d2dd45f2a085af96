"""FedAvg on IID digits reaches centralized accuracy (issue: within 1.5 percentage points)."""

import json

import pytest
import torch
import torch.nn.functional as F

from fedrun import checks
from fedrun.config import parse_args
from fedrun.models import build_model
from fedrun.registry import DATASETS

from .conftest import torchrun

# Same model (MLP, 64 hidden), same data (scikit-learn digits: the fixed 80% pool for training,
# the 20% for scoring), same optimiser (SGD lr 0.05). FedAvg: 10 IID clients, all of them every
# round, 5 local epochs of batch 10, 50 rounds. Centralized: 50 epochs of batch 32.
FED_ARGS = (
    "--dataset digits --partition iid --num-clients 10 --clients-per-round 10 "
    "--client-test-fraction 0 --model mlp --hidden 64 --lr 0.05 --local-epochs 5 "
    "--batch-size 10 --rounds 50 --eval-every 50"
).split()


def centralized_accuracy() -> float:
    cfg = checks.validate(parse_args(FED_ARGS))
    ds = DATASETS.load("digits")
    train = ds.split(*ds.raw(cfg, train=True))
    test = ds.central_data(cfg)
    model = build_model(cfg, ds.info(cfg))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        perm = torch.randperm(len(train), generator=gen)
        for i in range(0, len(train), 32):
            idx = perm[i : i + 32]
            opt.zero_grad()
            F.cross_entropy(model(train.x[idx]), train.y[idx]).backward()
            opt.step()
    with torch.no_grad():
        return (model(test.x).argmax(1) == test.y).float().mean().item()


@pytest.mark.slow
def test_fedavg_iid_digits_matches_centralized(tmp_path):
    out = tmp_path / "run"
    res = torchrun(3, *FED_ARGS, out=out, timeout=180)
    assert res.returncode == 0, res.stderr
    fed = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["central_acc"]
    central = centralized_accuracy()
    print(f"digits IID: FedAvg {fed:.4f}, centralized {central:.4f}")
    assert central > 0.95  # the reference itself trained
    assert abs(fed - central) <= 0.015
