"""FedAvgM and FedAdagrad / FedAdam / FedYogi against references written here from the papers'
equations (plain Python floats, one coordinate at a time), over several rounds."""

import math

import pytest
import torch
from torch import nn

from fedrun import checks
from fedrun.config import StrategyConfig, parse_args
from fedrun.errors import ConfigError
from fedrun.flat import FlatSpec
from fedrun.protocol import Received, RoundContext
from fedrun.strategies.fedadagrad import FedAdagrad
from fedrun.strategies.fedadam import FedAdam
from fedrun.strategies.fedavg import FedAvg
from fedrun.strategies.fedavgm import FedAvgM
from fedrun.strategies.fedyogi import FedYogi

CTX = RoundContext(1, 0, (0,))
# three rounds of mean client updates Delta_t for a 3-parameter model (A = 2 each round)
DELTAS = [[0.5, -0.2, 0.0], [0.3, 0.1, -0.4], [-0.1, 0.2, 0.05]]
X0 = [1.0, -1.0, 0.5]


def _layout():
    return FlatSpec.of(nn.Linear(3, 1, bias=False))


def _run(strategy):
    """The strategy's x after each round (flattened), fed U = A * Delta_t with A = 2."""
    x, out = torch.tensor(X0, dtype=torch.float64), []
    for t, d in enumerate(DELTAS, start=1):
        rec = Received({"update": 2 * torch.tensor(d, dtype=torch.float64)}, {"weight": 2.0})
        x = strategy.aggregate(RoundContext(t, 0, (0,)), x, rec)
        out.extend(x.tolist())
    return out


def _fedavgm_reference(eta, beta, nesterov):
    """Hsu et al. 2019: m_t = beta m_{t-1} + Delta_t, x_{t+1} = x_t + eta m_t (Nesterov:
    x_t + eta (beta m_t + Delta_t)), m_0 = 0."""
    x, m, out = list(X0), [0.0] * 3, []
    for d in DELTAS:
        for i in range(3):
            m[i] = beta * m[i] + d[i]
            x[i] += eta * ((beta * m[i] + d[i]) if nesterov else m[i])
        out.extend(x)
    return out


def _adaptive_reference(rule, eta, b1, b2, tau, bias_correction):
    """Reddi et al. 2021, Algorithm 2, with v_{-1} = tau^2, m_{-1} = 0."""
    x, m, v, out = list(X0), [0.0] * 3, [tau**2] * 3, []
    for t, d in enumerate(DELTAS, start=1):
        for i in range(3):
            m[i] = b1 * m[i] + (1 - b1) * d[i]
            g2 = d[i] ** 2
            if rule == "adagrad":
                v[i] = v[i] + g2
            elif rule == "adam":
                v[i] = b2 * v[i] + (1 - b2) * g2
            else:
                v[i] = v[i] - (1 - b2) * g2 * math.copysign(1.0, v[i] - g2) * (v[i] != g2)
            mh, vh = m[i], v[i]
            if bias_correction:
                mh /= 1 - b1**t
                vh = vh if rule == "adagrad" else vh / (1 - b2**t)
            x[i] += eta * mh / (math.sqrt(vh) + tau)
        out.extend(x)
    return out


@pytest.mark.parametrize(("beta", "nesterov"), [(0.9, False), (0.5, True), (0.0, False)])
def test_fedavgm_is_hsu_et_al(beta, nesterov):
    cfg = StrategyConfig(strategy="fedavgm", server_lr=0.7, server_momentum=beta, nesterov=nesterov)
    got = _run(FedAvgM(cfg, _layout()))
    assert got == pytest.approx(_fedavgm_reference(0.7, beta, nesterov), abs=1e-12)


def test_fedavgm_without_momentum_is_fedavg():
    fedavg = _run(FedAvg(StrategyConfig(), _layout()))
    assert _run(FedAvgM(StrategyConfig(strategy="fedavgm"), _layout())) == pytest.approx(fedavg)


@pytest.mark.parametrize(
    ("cls", "rule"), [(FedAdagrad, "adagrad"), (FedAdam, "adam"), (FedYogi, "yogi")]
)
@pytest.mark.parametrize("bias_correction", [False, True])
def test_adaptive_rules_are_reddi_et_al_algorithm_2(cls, rule, bias_correction):
    cfg = StrategyConfig(
        strategy="fed" + rule, server_lr=0.1, beta1=0.9, beta2=0.99, tau=1e-3,
        bias_correction=bias_correction,
    )  # fmt: skip
    got = _run(cls(cfg, _layout()))
    want = _adaptive_reference(rule, 0.1, 0.9, 0.99, 1e-3, bias_correction)
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_bias_correction_starts_at_t_1():
    """The first step's factor is (1 - beta1) / (1 - beta1^1) = 1: the bias-corrected m_1 is
    Delta_1 itself (Flower's exponent round + 1 makes it 0.1 / 0.19 = 0.526 for m, and 0.742
    for the step: not this)."""
    cfg = StrategyConfig(strategy="fedadam", server_lr=1.0, tau=1e-9, bias_correction=True)
    x = torch.zeros(3, dtype=torch.float64)
    delta = torch.tensor([0.5, -0.25, 2.0], dtype=torch.float64)
    rec = Received({"update": delta.clone()}, {"weight": 1.0})
    got = FedAdam(cfg, _layout()).aggregate(CTX, x, rec)
    # m_1 = Delta; v_1 / (1 - beta2) = Delta^2 + beta2 tau^2 / (1 - beta2) ~ Delta^2:
    # a step of sign(Delta)
    assert torch.allclose(got, torch.sign(delta), atol=1e-6)


def test_server_state_survives_a_checkpoint_round_trip():
    cfg = StrategyConfig(strategy="fedyogi", server_lr=0.1)
    a = FedYogi(cfg, _layout())
    first = _run(a)
    b = FedYogi(cfg, _layout())
    b.load_state_dict(a.state_dict())
    assert b.steps == 3 and set(a.state_dict()) == {"steps", "m", "v"}
    x = torch.tensor(first[-3:], dtype=torch.float64)
    rec = Received({"update": torch.tensor([0.2, 0.2, 0.2], dtype=torch.float64)}, {"weight": 1.0})
    assert torch.equal(a.aggregate(CTX, x, rec), b.aggregate(CTX, x, rec))


def test_buffers_are_averaged_under_a_server_optimizer():
    layout = FlatSpec.of(nn.BatchNorm1d(1))  # [weight, bias | running_mean, running_var]
    w = torch.tensor([1.0, 0.0, 0.0, 1.0])
    rec = Received({"update": torch.tensor([2.0, 2.0, 4.0, -1.0])}, {"weight": 2.0})
    new = FedAdam(StrategyConfig(strategy="fedadam", server_lr=0.1), layout).aggregate(CTX, w, rec)
    assert torch.allclose(new[2:], torch.tensor([2.0, 0.5]))  # w + U/A, whatever Adam did


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--strategy", "fedadam", "--server-momentum", "0.9"], "strategy.server_momentum"),
        (["--strategy", "fedavg", "--tau", "0.01"], "strategy.tau"),
        (["--strategy", "fedadagrad", "--beta2", "0.9"], "strategy.beta2"),
        (["--strategy", "fedavgm", "--nesterov", "--bias-correction"], "strategy.bias_correction"),
    ],
)
def test_a_flag_the_strategy_does_not_read_is_refused(argv, field):
    with pytest.raises(ConfigError, match=f"^{field} .*is not used by --strategy"):
        checks.validate(parse_args(argv))


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--server-momentum", "1"], "strategy.server_momentum"),
        (["--beta1", "-0.1"], "strategy.beta1"),
        (["--beta2", "1.5"], "strategy.beta2"),
        (["--tau", "0"], "strategy.tau"),
    ],
)
def test_bad_optimizer_values_name_the_flag(argv, field):
    with pytest.raises(ConfigError, match=f"^{field}"):
        parse_args(argv).validate()
