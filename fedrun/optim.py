"""The clients' local optimizer: torch.optim.SGD's update, without torch.optim's machinery.

torch.optim.Optimizer imports torch._dynamo the first time an optimizer is built (~0.9 s of CPU
per process here, in every worker's start-up, before the first round) and routes each step
and zero_grad through hooks and dynamo guards (~35 us a step for the seed CNN). The update here
is torch.optim.SGD's (dampening 0, no Nesterov) with the same operations in the same order, so
the parameters come out bitwise equal (tests/test_optim.py compares them step by step on the
CPU; on CUDA, torch.optim.SGD takes the same foreach kernels by default).

Local training needs only `reset` (each client starts with no momentum), `zero_grad` and
`step`; a strategy that changes the local objective (FedProx's proximal term, SCAFFOLD's
control variates) adds to the gradients before `step`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class SGD:
    """p <- p - lr * b, with b = g + wd * p (momentum 0) or b <- momentum * b + (g + wd * p),
    b starting as the first step's (g + wd * p), as torch.optim.SGD. Parameters without a
    gradient in a step are left alone, their momentum kept."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        self.params = list(params)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def reset(self) -> None:
        """Forget the momentum: the next step starts as a fresh optimizer's first."""
        self.buffers = [None] * len(self.params)

    def zero_grad(self) -> None:
        """Gradients to None, as torch.optim's default: backward then writes them fresh."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        params = [self.params[i] for i in live]
        grads = [p.grad for p in params]
        if self.weight_decay:
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        if self.momentum:
            old = [k for k, i in enumerate(live) if self.buffers[i] is not None]
            if old:
                bufs = [self.buffers[live[k]] for k in old]
                torch._foreach_mul_(bufs, self.momentum)
                torch._foreach_add_(bufs, [grads[k] for k in old])
            for k, i in enumerate(live):
                if self.buffers[i] is None:
                    self.buffers[i] = torch.clone(grads[k]).detach()
            grads = [self.buffers[i] for i in live]
        torch._foreach_add_(params, grads, alpha=-self.lr)
