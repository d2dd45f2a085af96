import pytest
import torch

from fedrun.config import StrategyConfig
from fedrun.exchange import RoundUpdates
from fedrun.strategies import STRATEGIES, build_strategy


def _sums(global_vec, clients) -> RoundUpdates:
    """(U, A) as the workers send them: sum a_k (w_k - w), sum a_k."""
    u = sum(a * (w - global_vec) for w, a in clients)
    return RoundUpdates(u, float(sum(a for _, a in clients)), [])


def test_fedavg_is_the_weighted_model_average():
    w = torch.tensor([1.0, 2.0])
    clients = [(torch.tensor([3.0, 2.0]), 1), (torch.tensor([1.0, 6.0]), 3)]
    # by hand: (1*[3,2] + 3*[1,6]) / 4 = [1.5, 5.0]
    new = build_strategy(StrategyConfig()).aggregate(w, _sums(w, clients))
    assert torch.allclose(new, torch.tensor([1.5, 5.0]))


def test_server_lr_scales_the_step():
    w = torch.tensor([1.0, 2.0])
    clients = [(torch.tensor([3.0, 2.0]), 1), (torch.tensor([1.0, 6.0]), 3)]
    new = build_strategy(StrategyConfig(server_lr=0.5)).aggregate(w, _sums(w, clients))
    assert torch.allclose(new, torch.tensor([1.25, 3.5]))  # w + 0.5 * ([1.5, 5] - w)


def test_client_weights():
    ex = build_strategy(StrategyConfig(weighting="examples"))
    un = build_strategy(StrategyConfig(weighting="uniform"))
    assert ex.client_weight(7) == 7.0 and un.client_weight(7) == 1.0
    assert ex.client_weight(0) == 0.0 and un.client_weight(0) == 0.0


def test_zero_total_weight_is_refused_and_input_untouched():
    w = torch.ones(3)
    with pytest.raises(ValueError, match="total client weight"):
        build_strategy(StrategyConfig()).aggregate(w, RoundUpdates(torch.zeros(3), 0.0, []))
    assert torch.equal(w, torch.ones(3))


def test_registry():
    assert set(STRATEGIES) >= {"fedavg"}
