"""FedAvgM (Hsu, Qi and Brown 2019, "Measuring the effects of non-identical data distribution
for federated visual classification"): server momentum on the mean client update,

    m_t = beta m_(t-1) + Delta_t   (m_0 = 0),    x_(t+1) = x_t + eta m_t,

or x_(t+1) = x_t + eta (beta m_t + Delta_t) with --nesterov. beta = 0, eta = 1 is FedAvg."""

from __future__ import annotations

import torch

from fedrun.strategies.fedopt import ServerOptimizer
from fedrun.strategies.maths import momentum_step


class FedAvgM(ServerOptimizer):
    uses = ("server_momentum", "nesterov")
    state_names = ("m",)

    def step(self, delta: torch.Tensor) -> torch.Tensor:
        return momentum_step(self.state["m"], delta, self.cfg.server_momentum, self.cfg.nesterov)
