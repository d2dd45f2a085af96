"""FedAvg (McMahan et al., AISTATS 2017): x <- x + eta * U / A on the trainable parameters.

With eta = 1 this is sum_k a_k x_k / sum_k a_k, the weighted model average the tutorials write
by hand; computing it on updates rather than models keeps the sum's magnitude small (better
float32 accuracy) and is the form FedOpt-style server optimizers generalise. Floating buffers
are averaged (eta does not apply to them: --server-lr 2 would push BatchNorm's running variance
past the clients' values, below zero); frozen parameters stay.

The whole algorithm is the default plan and client half of fedrun.strategies.base plus this
server step: the worked example in docs/architecture.md.
"""

from __future__ import annotations

import torch

from fedrun.protocol import Received, RoundContext
from fedrun.strategies.base import Strategy
from fedrun.strategies.maths import averaged_buffers, total_weight


class FedAvg(Strategy):
    def aggregate(
        self, ctx: RoundContext, global_vec: torch.Tensor, received: Received
    ) -> torch.Tensor:
        a = total_weight(received)
        new = global_vec.clone()
        p = self.layout.params
        torch.add(global_vec[p], received.update[p], alpha=self.cfg.server_lr / a, out=new[p])
        return averaged_buffers(new, global_vec, received, self.layout)
