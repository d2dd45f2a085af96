"""The strategy interface: server-side maths on flat vectors, testable without a process group.

With `reduction = "sum"` the server receives, per round, the weighted sum of the clients' updates
    U = sum_k a_k (w_k - w),  A = sum_k a_k,   a_k = strategy.client_weight(n_k)
(fedrun.exchange.RoundUpdates), brought by one reduce-SUM. `aggregate(w, updates)` returns the
next global vector. Strategies that must see every client's update (median, Krum) will name
another exchange in `reduction` and read per-client vectors from RoundUpdates; the round loops
only talk to the exchange the strategy names, so that path slots in without touching them.
Stateful server optimizers (FedAdam, FedYogi) keep their moments in `state_dict()` so
checkpoints can save them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from fedrun.config import StrategyConfig
from fedrun.exchange import RoundUpdates


class Strategy(ABC):
    reduction: ClassVar[str] = "sum"
    """How client updates reach the server: a key of fedrun.exchange.EXCHANGES."""

    def __init__(self, cfg: StrategyConfig) -> None:
        self.cfg = cfg

    def client_weight(self, num_examples: int) -> float:
        """a_k for a client with n_k training examples; 0 for a client without data."""
        if num_examples <= 0:
            return 0.0
        return float(num_examples) if self.cfg.weighting == "examples" else 1.0

    @abstractmethod
    def aggregate(self, global_vec: torch.Tensor, updates: RoundUpdates) -> torch.Tensor:
        """The next global vector from the current one and the round's updates (A > 0)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        pass
