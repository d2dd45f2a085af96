"""The server-optimizer family (Reddi et al. 2021, "Adaptive Federated Optimization"): FedAvg's
wire and client half, with x_{t+1} = x_t + eta * step(Delta_t) on the trainable parameters,
Delta_t = U / A the weighted mean client update. Floating buffers are averaged, frozen
parameters kept (fedrun.strategies.maths). The optimizer's state is the server's own, in
`state_dict` and so in every checkpoint; it is allocated on rank 0 at the first aggregation
(workers build the strategy too, and need none of it)."""

from __future__ import annotations

from typing import Any

import torch

from fedrun.protocol import Received, RoundContext
from fedrun.strategies.base import Strategy
from fedrun.strategies.maths import adaptive_step, averaged_buffers, mean_update


class ServerOptimizer(Strategy):
    state_names: tuple[str, ...] = ()  # the tensors of the server state, by name

    def __init__(self, cfg, layout) -> None:
        super().__init__(cfg, layout)
        self.state: dict[str, torch.Tensor] = {}
        self.steps = 0  # t, the server steps taken

    def initial_state(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: torch.zeros_like(like) for name in self.state_names}

    def step(self, delta: torch.Tensor) -> torch.Tensor:
        """The step without eta, from Delta_t (self.state and self.steps already current)."""
        raise NotImplementedError

    def aggregate(
        self, ctx: RoundContext, global_vec: torch.Tensor, received: Received
    ) -> torch.Tensor:
        delta = mean_update(received, self.layout)
        if not self.state:
            self.state = self.initial_state(delta)
        self.state = {k: t.to(delta.device) for k, t in self.state.items()}  # after a resume
        self.steps += 1
        new = global_vec.clone()
        p = self.layout.params
        new[p].add_(self.step(delta), alpha=self.cfg.server_lr)
        return averaged_buffers(new, global_vec, received, self.layout)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, **{k: v.detach().cpu().clone() for k, v in self.state.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state.get("steps", 0))
        self.state = {k: state[k] for k in self.state_names if k in state}


class AdaptiveOptimizer(ServerOptimizer):
    """FedAdagrad / FedAdam / FedYogi (Reddi et al. 2021, Algorithm 2): `rule` names the second
    moment's update in fedrun.strategies.maths.adaptive_step; x_(t+1) = x_t + eta m_t /
    (sqrt(v_t) + tau), v initialised to tau^2 and m to 0, no bias correction unless
    --bias-correction (then t = 1 in the first round: Flower's exponent round + 1 gives a
    first-round factor of 0.742 at beta1 = 0.9, fedrun's 1)."""

    rule = ""
    uses = ("beta1", "beta2", "tau", "bias_correction")
    state_names = ("m", "v")

    def initial_state(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"m": torch.zeros_like(like), "v": torch.full_like(like, self.cfg.tau**2)}

    def step(self, delta: torch.Tensor) -> torch.Tensor:
        c, m, v = self.cfg, self.state["m"], self.state["v"]
        return adaptive_step(
            self.rule, m, v, delta, c.beta1, c.beta2, c.tau, self.steps, c.bias_correction
        )
