"""FedAvg (McMahan et al., AISTATS 2017): w <- w + eta * U / A.

With eta = 1 this is sum_k a_k w_k / sum_k a_k, the weighted model average the tutorials write
by hand; computing it on updates rather than models keeps the sum's magnitude small (better
float32 accuracy) and is the form FedOpt-style server optimizers generalise.
"""

from __future__ import annotations

import torch

from fedrun.exchange import RoundUpdates
from fedrun.strategies.base import Strategy


class FedAvg(Strategy):
    def aggregate(self, global_vec: torch.Tensor, updates: RoundUpdates) -> torch.Tensor:
        if not updates.weight > 0:
            raise ValueError(f"total client weight must be > 0, got {updates.weight}")
        return global_vec.add(updates.update_sum, alpha=self.cfg.server_lr / updates.weight)
