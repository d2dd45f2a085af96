"""FedAvg's server step against hand-computed values (no process group)."""

import pytest
import torch
from torch import nn

from fedrun.config import StrategyConfig
from fedrun.flat import FlatSpec
from fedrun.protocol import Received, RoundContext
from fedrun.strategies.fedavg import FedAvg

CTX = RoundContext(1, 0, (0, 1))


def _layout(numel: int) -> FlatSpec:
    return FlatSpec.of(nn.Linear(numel, 1, bias=False))


def _received(global_vec, clients) -> Received:
    """(U, A) as the workers send them: sum a_k (w_k - w), sum a_k."""
    u = sum(a * (w - global_vec) for w, a in clients)
    return Received({"update": u}, {"weight": float(sum(a for _, a in clients))})


CLIENTS = [(torch.tensor([3.0, 2.0]), 1), (torch.tensor([1.0, 6.0]), 3)]


def test_fedavg_is_the_weighted_model_average():
    w = torch.tensor([1.0, 2.0])
    # by hand: (1*[3,2] + 3*[1,6]) / 4 = [1.5, 5.0]
    new = FedAvg(StrategyConfig(), _layout(2)).aggregate(CTX, w, _received(w, CLIENTS))
    assert torch.allclose(new, torch.tensor([1.5, 5.0]))


def test_server_lr_scales_the_step():
    w = torch.tensor([1.0, 2.0])
    new = FedAvg(StrategyConfig(server_lr=0.5), _layout(2)).aggregate(CTX, w, _received(w, CLIENTS))
    assert torch.allclose(new, torch.tensor([1.25, 3.5]))  # w + 0.5 * ([1.5, 5] - w)


def test_server_lr_moves_parameters_only_buffers_are_averaged():
    """BatchNorm1d(1): weight, bias (trainable), running_mean, running_var (buffers). With
    eta = 2 the parameters overshoot the clients' values; the buffers are their weighted mean,
    so a running variance the clients keep positive stays positive."""
    layout = FlatSpec.of(nn.BatchNorm1d(1))
    assert (layout.params, layout.buffers) == (slice(0, 2), slice(2, 4))
    w = torch.tensor([1.0, 0.0, 0.0, 1.0])
    clients = [(torch.tensor([2.0, 1.0, 1.0, 0.2]), 1), (torch.tensor([2.0, 1.0, 3.0, 0.4]), 1)]
    new = FedAvg(StrategyConfig(server_lr=2.0), layout).aggregate(CTX, w, _received(w, clients))
    # params: w + 2 * (mean - w) = [1 + 2*1, 0 + 2*1]; buffers: the mean [2, 0.3]
    assert torch.allclose(new, torch.tensor([3.0, 2.0, 2.0, 0.3]))


def test_frozen_parameters_keep_their_value():
    model = nn.Linear(1, 1)
    model.bias.requires_grad_(False)
    layout = FlatSpec.of(model)  # [weight | bias (frozen)]
    w = torch.tensor([1.0, 5.0])
    new = FedAvg(StrategyConfig(), layout).aggregate(
        CTX, w, _received(w, [(torch.tensor([3.0, 7.0]), 1)])
    )
    assert torch.equal(new, torch.tensor([3.0, 5.0]))


def test_equals_the_one_line_form_bitwise():
    """The kinds apart change no bits: for an all-parameter model the step is w + (eta/A) U."""
    g = torch.Generator().manual_seed(0)
    w, u = torch.randn(1000, generator=g), torch.randn(1000, generator=g)
    rec = Received({"update": u}, {"weight": 37.0})
    new = FedAvg(StrategyConfig(server_lr=0.7), _layout(1000)).aggregate(CTX, w, rec)
    assert torch.equal(new, w.add(u, alpha=0.7 / 37.0))


def test_client_weights():
    ex = FedAvg(StrategyConfig(weighting="examples"), _layout(1))
    un = FedAvg(StrategyConfig(weighting="uniform"), _layout(1))
    assert ex.client_weight(7) == 7.0 and un.client_weight(7) == 1.0
    assert ex.client_weight(0) == 0.0 and un.client_weight(0) == 0.0


def test_zero_total_weight_is_refused_and_input_untouched():
    w = torch.ones(3)
    with pytest.raises(ValueError, match="total client weight"):
        FedAvg(StrategyConfig(), _layout(3)).aggregate(
            CTX, w, Received({"update": torch.zeros(3)}, {"weight": 0.0})
        )
    assert torch.equal(w, torch.ones(3))
