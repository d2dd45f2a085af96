"""FedProx's client half: the proximal gradient mu (w - w_t) on trainable parameters only."""

import pytest
import torch
from torch import nn

from fedrun import checks
from fedrun.config import StrategyConfig, parse_args
from fedrun.errors import ConfigError
from fedrun.flat import FlatSpec
from fedrun.protocol import ClientRound, RoundContext
from fedrun.strategies.fedprox import FedProx


def _client(w):
    return ClientRound(RoundContext(1, 0, (0,)), 0, 4, 4.0, w, {"w": w})


def test_the_hook_adds_mu_times_the_distance_to_the_global_model():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    model[1].bias.requires_grad_(False)  # frozen: no gradient, no term
    layout = FlatSpec.of(model)
    w = layout.flatten(model).clone()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.5)  # w - w_t = 1.5 everywhere
            p.grad = torch.full_like(p, 0.25) if p.requires_grad else None
    hook = FedProx(StrategyConfig(strategy="fedprox", mu=0.2), layout).grad_hook(_client(w), model)
    hook()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert torch.allclose(p.grad, torch.full_like(p, 0.25 + 0.2 * 1.5)), name
        else:
            assert p.grad is None
    # the running statistics (buffers) take no part
    assert torch.equal(model[1].running_mean, torch.zeros(2))


def test_mu_zero_adds_no_hook():
    layout = FlatSpec.of(nn.Linear(2, 1))
    strategy = FedProx(StrategyConfig(strategy="fedprox"), layout)
    assert strategy.grad_hook(_client(torch.zeros(3)), nn.Linear(2, 1)) is None


def test_a_task_with_its_own_train_is_refused_and_mu_needs_fedprox():
    with pytest.raises(ConfigError, match="fedprox changes local training, but .* own train"):
        checks.validate(
            parse_args(["--strategy", "fedprox", "--task", "tests.userpkg.tasks:SeedStyle"])
        )
    with pytest.raises(
        ConfigError, match=r"^strategy.mu \(--mu\): is not used by --strategy fedadam"
    ):
        checks.validate(parse_args(["--strategy", "fedadam", "--mu", "0.1"]))
    with pytest.raises(ConfigError, match=r"^strategy.mu \(--mu\): must be >= 0"):
        parse_args(["--mu", "-1"]).validate()
