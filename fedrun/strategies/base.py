"""The strategy interface: both halves of one federated algorithm, and the wire between them.

A strategy declares what travels (`plan()`, a fedrun.wire.WirePlan), what a client does on its
worker (`client_weight`, `grad_hook`, `contribute`) and what rank 0 does with the sums
(`server_downlink`, `aggregate`, `state_dict`). The exchange packs the plan into one broadcast
and one collective per (operation, dtype) group; the round loops call only these methods.

With the default plan the server receives, per round, the weighted sum of the updates
    U = sum_k a_k (w_k - w),  A = sum_k a_k,   a_k = client_weight(n_k)
(fedrun.protocol.Received). Randomness comes from `ctx.seed_for(purpose, client)`; per-client
memory from `ClientRound.state` (declare `needs_client_state`); server memory from
`state_dict()`, saved in every checkpoint: so resume stays bitwise.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from fedrun.config import Config, StrategyConfig, all_fields
from fedrun.errors import ConfigError
from fedrun.flat import FlatSpec
from fedrun.protocol import ClientRound, Received, RoundContext
from fedrun.wire import WirePlan

COMMON = ("strategy", "weighting", "server_lr", "max_update_norm", "on_bad_update", "stages")
"""StrategyConfig fields every strategy reads (the guard's among them)."""

GradHook = Callable[[], None]
"""Called after `backward()` and before each optimizer step of local training."""


class Strategy(ABC):
    needs_client_state: ClassVar[bool] = False
    """True: the workers keep a per-client state store (ClientRound.state), checkpointed."""
    local_objective: ClassVar[bool] = False
    """True: `grad_hook` changes local training, which a task's own train() cannot take."""

    def __init__(self, cfg: StrategyConfig, layout: FlatSpec) -> None:
        self.cfg, self.layout = cfg, layout

    uses: ClassVar[tuple[str, ...]] = ()
    """The fields of StrategyConfig this strategy reads beyond COMMON ones: setting any other
    is refused (a flag that would silently do nothing)."""

    @classmethod
    def check(cls, cfg: Config) -> None:
        """Refuse combinations of options this strategy cannot run (ConfigError); called on
        every rank before any collective. Overrides call super().check(cfg)."""
        defaults = StrategyConfig()
        for f in dataclasses.fields(StrategyConfig):
            if f.name in COMMON or f.name in cls.uses:
                continue
            if getattr(cfg.strategy, f.name) != getattr(defaults, f.name):
                raise ConfigError(
                    all_fields()[f.name].label,
                    f"is not used by --strategy {cfg.strategy.strategy}",
                    "drop it, or pick a strategy that reads it (see --help)",
                )

    # -- the wire ----------------------------------------------------------------------------

    def plan(self) -> WirePlan:
        """What travels each round; the default is FedAvg's w down, U and statistics up."""
        return WirePlan.default(self.layout.numel, self.layout.dtype)

    # -- client half (workers) ---------------------------------------------------------------

    def client_weight(self, num_examples: int) -> float:
        """a_k for a client with n_k training examples; 0 for a client without data."""
        if num_examples <= 0:
            return 0.0
        return float(num_examples) if self.cfg.weighting == "examples" else 1.0

    def grad_hook(self, client: ClientRound, model: nn.Module) -> GradHook | None:
        """A hook between backward() and the optimizer step of this client's local training
        (FedProx's proximal gradient, SCAFFOLD's correction), or None."""
        return None

    def contribute(
        self,
        client: ClientRound,
        delta: torch.Tensor,
        sums: dict[str, torch.Tensor],
        stats: dict[str, float],
    ) -> None:
        """Add one client's (staged) update to the worker's uplink sums."""
        sums["update"].add_(delta, alpha=client.weight)

    # -- server half (rank 0) ----------------------------------------------------------------

    def server_downlink(self, ctx: RoundContext, downlink: dict[str, torch.Tensor]) -> None:  # noqa: B027
        """Fill the plan's downlink segments other than w before the round's broadcast."""

    @abstractmethod
    def aggregate(
        self, ctx: RoundContext, global_vec: torch.Tensor, received: Received
    ) -> torch.Tensor:
        """The next global vector from the current one and the round's sums (A > 0)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        pass
