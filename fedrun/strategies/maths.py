"""Pure maths shared by strategies of the FedAvg family, on flat vectors.

Every function keeps the layout's kinds apart (fedrun.flat): a server step acts on the
trainable parameters, floating buffers (BatchNorm statistics) are the plain weighted average of
the clients' values, and frozen parameters keep their value.
"""

from __future__ import annotations

import torch

from fedrun.flat import FlatSpec
from fedrun.protocol import Received


def total_weight(received: Received) -> float:
    """A, refused unless positive (the server checks it before any strategy runs)."""
    if not received.weight > 0:
        raise ValueError(f"total client weight must be > 0, got {received.weight}")
    return received.weight


def averaged_buffers(
    new: torch.Tensor, global_vec: torch.Tensor, received: Received, layout: FlatSpec
) -> torch.Tensor:
    """Write w + U/A (= sum_k a_k w_k / A) into `new`'s buffer range, whatever the server step
    did to the parameters; returns `new`."""
    b = layout.buffers
    torch.add(global_vec[b], received.update[b], alpha=1.0 / total_weight(received), out=new[b])
    return new


def mean_update(received: Received, layout: FlatSpec) -> torch.Tensor:
    """Delta_t = U / A on the trainable range: the weighted mean client update."""
    return received.update[layout.params] / total_weight(received)


def momentum_step(
    m: torch.Tensor, delta: torch.Tensor, beta: float, nesterov: bool
) -> torch.Tensor:
    """FedAvgM (Hsu et al. 2019): m_t = beta m_(t-1) + Delta_t, in place in `m` (m_0 = 0, so
    m_1 = Delta_1); the step is m_t, or beta m_t + Delta_t with Nesterov."""
    m.mul_(beta).add_(delta)
    return m.mul(beta).add_(delta) if nesterov else m


def adaptive_step(
    rule: str,
    m: torch.Tensor,
    v: torch.Tensor,
    delta: torch.Tensor,
    beta1: float,
    beta2: float,
    tau: float,
    t: int,
    bias_correction: bool,
) -> torch.Tensor:
    """Reddi et al. 2021, Algorithm 2 (m_(-1) = 0, v_(-1) = tau^2), `m` and `v` in place:
        m_t = beta1 m_(t-1) + (1 - beta1) Delta_t
        v_t = v_(t-1) + Delta_t^2                                          (adagrad)
        v_t = beta2 v_(t-1) + (1 - beta2) Delta_t^2                        (adam)
        v_t = v_(t-1) - (1 - beta2) Delta_t^2 sign(v_(t-1) - Delta_t^2)    (yogi)
    and the step eta m_t / (sqrt(v_t) + tau) without eta. With `bias_correction`, m_t / (1 -
    beta1^t) and (adam, yogi) v_t / (1 - beta2^t), t = 1 in the first round."""
    m.mul_(beta1).add_(delta, alpha=1 - beta1)
    sq = delta * delta
    if rule == "adagrad":
        v.add_(sq)
    elif rule == "adam":
        v.mul_(beta2).add_(sq, alpha=1 - beta2)
    elif rule == "yogi":
        v.sub_(sq.mul_(torch.sign(v - sq)).mul_(1 - beta2))
    else:
        raise ValueError(f"unknown adaptive rule {rule!r}")
    mt, vt = m, v
    if bias_correction:
        mt = m / (1 - beta1**t)
        if rule != "adagrad":
            vt = v / (1 - beta2**t)
    return mt / (vt.sqrt() + tau)
