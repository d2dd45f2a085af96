import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedrun.config import TrainConfig
from fedrun.data import Split
from fedrun.optim import SGD
from fedrun.train import (
    TensorLoader,
    batches,
    evaluate,
    local_train,
    loss_for,
    make_loader,
    num_batches,
)


def test_epochs_are_permutations_and_steps_cross_epochs():
    g = torch.Generator().manual_seed(0)
    loader = TensorLoader(Split(torch.arange(10.0), torch.arange(10)), 4, g)
    got = [y for _, y in batches(loader, steps=0, epochs=2)]
    assert [len(b) for b in got] == [4, 4, 2, 4, 4, 2]
    assert sorted(torch.cat(got[:3]).tolist()) == list(range(10))
    assert sorted(torch.cat(got[3:]).tolist()) == list(range(10))
    assert torch.cat(got[:3]).tolist() != torch.cat(got[3:]).tolist()  # reshuffled
    assert [len(y) for _, y in batches(loader, steps=5, epochs=1)] == [4, 4, 2, 4, 4]
    empty = TensorLoader(Split(torch.zeros(0), torch.zeros(0)), 4, g)
    assert list(batches(empty, steps=3, epochs=1)) == []


def test_dataset_path_matches_tensor_path():
    """A generic Dataset goes through a DataLoader; with the same generator state it yields
    the same batches as the tensor fast path."""
    data = _data(n=23)
    wrapped = Wrapped(data)
    fast = [y for _, y in make_loader(data, 5, torch.Generator().manual_seed(1))]
    slow = [y for _, y in make_loader(wrapped, 5, torch.Generator().manual_seed(1))]
    assert [len(b) for b in fast] == [len(b) for b in slow] == [5, 5, 5, 5, 3]
    assert sorted(torch.cat(slow).tolist()) == sorted(data.y.tolist())
    seq = torch.cat([x for x, _ in make_loader(wrapped, 5, None)])
    assert torch.equal(seq, data.x)


class Wrapped(torch.utils.data.Dataset):
    def __init__(self, split):
        self.split = split

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        return self.split.x[i], self.split.y[i]


def _data(n=40, seed=0) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g))


def _model():
    torch.manual_seed(0)
    return nn.Linear(5, 3)


def _train(model, opt, data, cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    return local_train(model, opt, data, cfg, F.cross_entropy, gen, torch.device("cpu"))


def test_optimizer_state_is_fresh_for_every_client():
    cfg = TrainConfig(lr=0.1, momentum=0.9, batch_size=8, local_epochs=2)
    start = _model()
    # client B alone, with a fresh model and optimizer
    alone = copy.deepcopy(start)
    _train(alone, SGD(alone.parameters(), lr=0.1, momentum=0.9), _data(seed=2), cfg, 7)
    # the reused model and optimizer: client A first, then B from the same start
    reused = copy.deepcopy(start)
    opt = SGD(reused.parameters(), lr=0.1, momentum=0.9)
    _train(reused, opt, _data(seed=1), cfg, 3)
    reused.load_state_dict(start.state_dict())
    _train(reused, opt, _data(seed=2), cfg, 7)
    for a, b in zip(alone.parameters(), reused.parameters(), strict=True):
        assert torch.equal(a, b)


def test_loss_sum_and_samples_seen():
    cfg = TrainConfig(lr=0.1, batch_size=16, local_epochs=3)
    model = _model()
    loss_sum, seen = _train(model, SGD(model.parameters(), lr=0.1), _data(), cfg, 0)
    assert seen == 120 and 0 < loss_sum / seen < 5
    cfg = TrainConfig(lr=0.1, batch_size=16, local_steps=4)
    loss_sum, seen = _train(model, SGD(model.parameters(), lr=0.1), _data(), cfg, 0)
    assert seen == 16 + 16 + 8 + 16


def test_evaluate_matches_a_direct_computation():
    model, data = _model(), _data(n=37)
    loss, correct, n = evaluate(model, data, F.cross_entropy, True, 10, torch.device("cpu"))
    out = model(data.x)
    assert n == 37
    assert abs(loss - F.cross_entropy(out, data.y, reduction="sum").item()) < 1e-4
    assert correct == (out.argmax(1) == data.y).sum().item()


def test_regression_loss_is_mse():
    fn = loss_for("regression")
    out, y = torch.tensor([[1.0], [3.0]]), torch.tensor([0.0, 1.0])
    assert fn(out, y).item() == (1 + 4) / 2
    assert fn(out, torch.tensor([0, 1])).item() == (1 + 4) / 2  # integer targets are cast


def test_the_gradient_hook_runs_between_backward_and_each_step():
    """A hook that adds mu * (p - p0) to every gradient (FedProx's proximal term) equals
    plain SGD on the loss + mu/2 ||p - p0||^2 written out by hand."""
    cfg = TrainConfig(lr=0.1, batch_size=8, local_epochs=2)
    mu, data = 0.5, _data()
    hooked, by_hand = _model(), _model()
    p0 = [p.detach().clone() for p in hooked.parameters()]
    calls = []

    def hook():
        calls.append(all(p.grad is not None for p in hooked.parameters()))
        for p, q in zip(hooked.parameters(), p0, strict=True):
            p.grad.add_(p.detach() - q, alpha=mu)

    gen = torch.Generator().manual_seed(4)
    opt = SGD(hooked.parameters(), lr=0.1)
    local_train(hooked, opt, data, cfg, F.cross_entropy, gen, torch.device("cpu"), hook)
    assert calls == [True] * 10  # 40 samples / 8, two epochs: once per step, grads ready

    def proximal(out, y):
        prox = sum(((p - q) ** 2).sum() for p, q in zip(by_hand.parameters(), p0, strict=True))
        return F.cross_entropy(out, y) + mu / 2 * prox

    gen = torch.Generator().manual_seed(4)
    opt = SGD(by_hand.parameters(), lr=0.1)
    local_train(by_hand, opt, data, cfg, proximal, gen, torch.device("cpu"))
    for a, b in zip(hooked.parameters(), by_hand.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)  # float rounding of two ways to the same gradient


@pytest.mark.parametrize(
    ("n", "policy", "sizes"),
    [
        (33, "single", [32]),  # the one left over is dropped
        (33, "none", [32, 1]),
        (34, "single", [32, 2]),  # two are a batch BatchNorm can train on
        (34, "all", [32]),
        (1, "single", []),  # a one-sample client takes no step
        (64, "all", [32, 32]),
    ],
)
def test_drop_last_policy_on_both_loader_paths(n, policy, sizes):
    data = _data(n=n)
    for d in (data, Wrapped(data)):
        loader = make_loader(d, 32, torch.Generator().manual_seed(0), policy)
        assert len(loader) == len(sizes) == num_batches(n, 32, policy)
        assert [len(y) for _, y in loader] == sizes
    truncated = make_loader(Wrapped(data), 32, torch.Generator().manual_seed(0), policy)
    assert truncated.batch_size == 32 and truncated.dataset.split is data  # as a DataLoader
    # evaluation (no policy given) sees every sample
    assert sum(len(y) for _, y in make_loader(Wrapped(data), 32, None)) == n
