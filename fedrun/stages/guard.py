"""The bad-update guard, first in every stage chain.

A client update with NaN or Inf anywhere, or whose trainable parameters' L2 norm exceeds
--max-update-norm (BatchNorm statistics and frozen parameters are not counted), is bad:
--on-bad-update fail stops the run naming the client; skip leaves the client out and counts it
in the `skipped` statistic. Its server half refuses a round in which every update was dropped.
"""

from __future__ import annotations

import math

import torch

from fedrun.errors import FedrunError
from fedrun.protocol import ClientRound, Received, RoundContext
from fedrun.stages.base import Stage
from fedrun.wire import WirePlan


def bad_update(delta: torch.Tensor, params: slice, max_norm: float) -> str:
    """Why a client update must not be aggregated ("" if it may): NaN/Inf, or a norm bound on
    the trainable range `params`."""
    # summed in float64 on the fly: no float64 copy of the vector (8 bytes a parameter)
    if max_norm > 0:
        norm = float(torch.linalg.vector_norm(delta[params], dtype=torch.float64))
        if not math.isfinite(norm) or not bool(torch.isfinite(delta).all()):
            return "NaN or Inf"
        if norm > max_norm:
            return f"L2 norm {norm:.4g} > --max-update-norm {max_norm:g}"
        return ""
    # one pass over the vector: the sum of squares is finite iff every element is finite
    # (squares that overflow to Inf only make a huge update look bad, which it is)
    if not math.isfinite(float(torch.linalg.vector_norm(delta, dtype=torch.float64))):
        return "NaN or Inf"
    return ""


class UpdateGuard(Stage):
    def plan(self, plan: WirePlan) -> WirePlan:
        return plan.with_stats("skipped")

    def client(
        self, client: ClientRound, delta: torch.Tensor, stats: dict[str, float]
    ) -> torch.Tensor | None:
        s = self.cfg.strategy
        problem = bad_update(delta, self.layout.params, s.max_update_norm)
        if not problem:
            return delta
        if s.on_bad_update == "fail":
            raise FedrunError(
                f"round {client.ctx.round}: client {client.client} sent a bad update ({problem}); "
                "lower --lr, or pass --on-bad-update skip to drop such clients"
            )
        stats["skipped"] += 1
        return None

    def server(self, ctx: RoundContext, received: Received) -> Received:
        skipped = int(received.stats["skipped"])
        if not received.weight > 0 and skipped:
            raise FedrunError(
                f"round {ctx.round}: every update was dropped as bad ({skipped} clients); "
                "lower --lr or raise --max-update-norm"
            )
        return received
