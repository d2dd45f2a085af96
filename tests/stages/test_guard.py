"""The bad-update guard: its rule, its client half and its server half (no process group)."""

import pytest
import torch
from torch import nn

from fedrun.config import Config
from fedrun.errors import FedrunError
from fedrun.flat import FlatSpec
from fedrun.protocol import ClientRound, Received, RoundContext
from fedrun.stages.guard import UpdateGuard, bad_update
from fedrun.wire import WirePlan

ALL = slice(0, None)


@pytest.mark.parametrize(
    ("delta", "bound", "expected"),
    [
        (torch.tensor([1.0, 2.0]), 0.0, ""),
        (torch.tensor([1.0, float("nan")]), 0.0, "NaN or Inf"),
        (torch.tensor([float("inf"), 0.0]), 100.0, "NaN or Inf"),
        (torch.tensor([3.0, 4.0]), 4.9, "L2 norm 5 > --max-update-norm 4.9"),
        (torch.tensor([3.0, 4.0]), 5.1, ""),
        # summed in float64: finite although the norm (4.2e38) overflows float32
        (torch.tensor([3e38, 3e38]), 0.0, ""),
        (torch.tensor([3.0, 4.0], dtype=torch.bfloat16), 4.9, "L2 norm 5 > --max-update-norm 4.9"),
    ],
)
def test_bad_update_rule(delta, bound, expected):
    assert bad_update(delta, ALL, bound) == expected


def test_the_norm_bound_counts_trainable_parameters_only():
    """[3, 4 | 100]: the buffer's 100 is not part of the update's norm; a NaN there still is
    bad."""
    delta = torch.tensor([3.0, 4.0, 100.0])
    assert bad_update(delta, slice(0, 2), 5.1) == ""
    assert bad_update(delta, slice(0, 3), 5.1).startswith("L2 norm 100.1 ")  # sqrt(9 + 16 + 10^4)
    assert bad_update(torch.tensor([3.0, 4.0, float("nan")]), slice(0, 2), 5.1) == "NaN or Inf"


def _guard(**strategy) -> UpdateGuard:
    cfg = Config()
    for k, v in strategy.items():
        setattr(cfg.strategy, k, v)
    return UpdateGuard(cfg, FlatSpec.of(nn.Linear(2, 1, bias=False)))


def _client(round_=3, client=7) -> ClientRound:
    ctx = RoundContext(round_, 0, (client,))
    return ClientRound(ctx, client, 10, 10.0, torch.zeros(2), {})


def test_skip_counts_and_leaves_the_client_out():
    guard = _guard(max_update_norm=1.0, on_bad_update="skip")
    assert guard.plan(WirePlan.default(2, torch.float32)).stats[-1] == "skipped"
    stats = {"skipped": 0.0}
    assert guard.client(_client(), torch.tensor([3.0, 4.0]), stats) is None
    assert stats["skipped"] == 1
    ok = torch.tensor([0.3, 0.4])
    assert guard.client(_client(), ok, stats) is ok and stats["skipped"] == 1


def test_fail_names_round_and_client():
    with pytest.raises(FedrunError, match=r"round 3: client 7 sent a bad update \(NaN or Inf\)"):
        _guard().client(_client(), torch.tensor([float("nan"), 0.0]), {"skipped": 0.0})


def test_server_half_refuses_a_round_where_every_update_was_dropped():
    guard = _guard(on_bad_update="skip")
    ctx = RoundContext(4, 0, (1, 2))
    with pytest.raises(FedrunError, match="round 4: every update was dropped as bad"):
        guard.server(ctx, Received({}, {"weight": 0.0, "skipped": 2.0}))
    rec = Received({}, {"weight": 0.0, "skipped": 0.0})  # no data: the server's own message
    assert guard.server(ctx, rec) is rec
