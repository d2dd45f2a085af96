"""FedAdagrad (Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2): the adagrad rule
of fedrun.strategies.maths.adaptive_step on Delta_t, the weighted mean client update;
x_(t+1) = x_t + eta m_t / (sqrt(v_t) + tau), v initialised to tau^2 and m to 0, no bias
correction unless --bias-correction (then t = 1 in the first round: Flower's exponent
round + 1 gives a first-round factor of 0.742 at beta1 = 0.9, fedrun's 1)."""

from __future__ import annotations

import torch

from fedrun.strategies.fedopt import ServerOptimizer
from fedrun.strategies.maths import adaptive_step


class FedAdagrad(ServerOptimizer):
    uses = ("beta1", "tau", "bias_correction")
    state_names = ("m", "v")

    def initial_state(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"m": torch.zeros_like(like), "v": torch.full_like(like, self.cfg.tau**2)}

    def step(self, delta: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        m, v = self.state["m"], self.state["v"]
        return adaptive_step(
            "adagrad", m, v, delta, c.beta1, c.beta2, c.tau, self.steps, c.bias_correction
        )
