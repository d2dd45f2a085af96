"""The strategy interface: server-side maths on flat vectors, testable without a process group.

Workers send, per round, the weighted sum of their clients' updates
    U = sum_k a_k (w_k - w),  A = sum_k a_k,   a_k = strategy.client_weight(n_k)
packed into one buffer and reduced (SUM) to rank 0. `aggregate(w, U, A)` returns the next global
vector. Strategies that must see every client's update (robust aggregation, e.g. median or Krum)
will set `reduction = "gather"` and implement `aggregate_each`; the round loop asks the
communication layer for the reduction the strategy names, so that path slots in without
touching the loop. Stateful server optimizers (FedAdam, FedYogi) keep their moments in
`state_dict()` so checkpoints can save them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from fedrun.config import StrategyConfig


class Strategy(ABC):
    reduction: ClassVar[str] = "sum"
    """How client updates reach the server: "sum" (one reduce of weighted sums)."""

    def __init__(self, cfg: StrategyConfig) -> None:
        self.cfg = cfg

    def client_weight(self, num_examples: int) -> float:
        """a_k for a client with n_k training examples; 0 for a client without data."""
        if num_examples <= 0:
            return 0.0
        return float(num_examples) if self.cfg.weighting == "examples" else 1.0

    @abstractmethod
    def aggregate(
        self, global_vec: torch.Tensor, update_sum: torch.Tensor, weight_sum: float
    ) -> torch.Tensor:
        """The next global vector from the current one and the reduced (U, A); weight_sum > 0."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        pass
