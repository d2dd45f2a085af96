"""fedrun's local SGD against torch.optim.SGD: the same parameters, bit for bit, step by step.
Bitwise (not a tolerance) because the update is the same operations in the same order; any
drift would mean a different formula."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedrun.optim import SGD


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10), nn.Linear(10, 3)
    )


def _batches(n: int):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 8, 3, 8, 8, generator=g)
    y = torch.randint(0, 3, (n, 8), generator=g)
    return list(zip(x, y, strict=True))  # a different batch every step


def _step(model, opt, xb, yb, frozen=None):
    opt.zero_grad()
    F.cross_entropy(model(xb), yb).backward()
    if frozen is not None:  # a parameter without a gradient in this step
        frozen.grad = None
    opt.step()


@pytest.mark.parametrize(
    "momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.9, 1e-3), (0.0, 1e-2)]
)
def test_steps_equal_torch_sgd_bitwise(momentum, weight_decay):
    ours, theirs = _model(), _model()
    a = SGD(ours.parameters(), lr=0.05, momentum=momentum, weight_decay=weight_decay)
    b = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=momentum, weight_decay=weight_decay)
    for i, (xb, yb) in enumerate(_batches(6)):
        # the last layer's bias has no gradient in steps 2 and 3: skipped, its momentum kept
        fa = ours[4].bias if i in (2, 3) else None
        fb = theirs[4].bias if i in (2, 3) else None
        _step(ours, a, xb, yb, fa)
        _step(theirs, b, xb, yb, fb)
        for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
            assert torch.equal(p, q), f"step {i}"
    moved = zip(ours.parameters(), _model().parameters(), strict=True)
    assert any(not torch.equal(p, q) for p, q in moved)  # the steps did something


def test_reset_starts_like_a_fresh_optimizer():
    start = _model()
    reused, fresh = copy.deepcopy(start), copy.deepcopy(start)
    opt = SGD(reused.parameters(), lr=0.05, momentum=0.9)
    for xb, yb in _batches(3):
        _step(reused, opt, xb, yb)
    reused.load_state_dict(start.state_dict())
    opt.reset()
    ref = torch.optim.SGD(fresh.parameters(), lr=0.05, momentum=0.9)
    for xb, yb in _batches(3):
        _step(reused, opt, xb, yb)
        _step(fresh, ref, xb, yb)
    for p, q in zip(reused.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(p, q)


def test_zero_grad_and_no_gradients():
    model = _model()
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    before = [p.clone() for p in model.parameters()]
    opt.step()  # no gradients at all: nothing moves
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    F.cross_entropy(model(_batches(1)[0][0]), _batches(1)[0][1]).backward()
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sparse_gradients_equal_torch_sgd(momentum):
    """nn.Embedding(sparse=True): rows without a lookup keep their values, as in torch."""
    torch.manual_seed(0)
    ours, theirs = nn.Embedding(5, 2, sparse=True), nn.Embedding(5, 2, sparse=True)
    theirs.load_state_dict(ours.state_dict())
    a = SGD(ours.parameters(), lr=0.1, momentum=momentum)
    b = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=momentum)
    for i in range(3):
        idx = torch.tensor([i, 2])
        for emb, opt in ((ours, a), (theirs, b)):
            opt.zero_grad()
            emb(idx).pow(2).sum().backward()
            opt.step()
        assert torch.equal(ours.weight, theirs.weight)
    assert torch.equal(ours.weight[4], _untouched(4))


def _untouched(row: int) -> torch.Tensor:
    torch.manual_seed(0)
    return nn.Embedding(5, 2, sparse=True).weight[row].detach()
