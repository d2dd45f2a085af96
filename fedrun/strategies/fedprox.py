"""FedProx (Li et al., MLSys 2020, "Federated Optimization in Heterogeneous Networks"): each
client minimises its local objective plus a proximal term over its trainable parameters,

    h_k(w; w_t) = F_k(w) + mu/2 ||w - w_t||^2,   so the gradient gets mu (w - w_t),

added by a hook between backward() and each optimizer step (the local loss and the optimizer
are fedrun's own: momentum and weight decay act on the proximal gradient too). The server half
is FedAvg's. mu = 0 adds no hook: FedAvg, bit for bit. A --task that brings its own train()
is refused at start-up (fedrun.checks): the term could not reach its loop."""

from __future__ import annotations

from torch import nn

from fedrun.protocol import ClientRound
from fedrun.strategies.base import GradHook
from fedrun.strategies.fedavg import FedAvg


class FedProx(FedAvg):
    uses = ("mu",)
    local_objective = True

    def grad_hook(self, client: ClientRound, model: nn.Module) -> GradHook | None:
        mu = self.cfg.mu
        if mu == 0:
            return None
        params = dict(model.named_parameters())  # a tied parameter appears once here
        w = client.global_vec
        pairs = [
            (params[e.name], w[e.offset : e.offset + e.numel].view(e.shape))
            for e in self.layout.entries
            if e.kind == "param" and e.name in params
        ]

        def proximal() -> None:
            for p, anchor in pairs:
                if p.grad is not None:
                    p.grad.add_(p.detach() - anchor, alpha=mu)

        return proximal
