"""The stage interface (pfl-research's postprocessor idea, fedrun's wire).

On a worker, for every trained client, in chain order:
    delta = stage.client(client, delta, stats)      (None: the client is left out)
then the strategy's `contribute` adds what is left to the uplink sums. On rank 0, after the
uplink collectives and before the strategy's `aggregate`, in reverse chain order:
    received = stage.server(ctx, received)
A stage may declare more statistics or segments in `plan` (e.g. a count, a scale), take
randomness from `client.ctx.seed_for(...)` and keep per-client state in `client.state` (declare
`needs_client_state`).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from fedrun.config import Config
from fedrun.flat import FlatSpec
from fedrun.protocol import ClientRound, Received, RoundContext
from fedrun.wire import WirePlan


class Stage:
    needs_client_state: ClassVar[bool] = False

    def __init__(self, cfg: Config, layout: FlatSpec) -> None:
        self.cfg, self.layout = cfg, layout

    def plan(self, plan: WirePlan) -> WirePlan:
        """The plan with whatever this stage adds to the wire (nothing by default)."""
        return plan

    def client(
        self, client: ClientRound, delta: torch.Tensor, stats: dict[str, float]
    ) -> torch.Tensor | None:
        """This client's update after the stage (may be changed in place), or None to leave the
        client out of the round."""
        return delta

    def server(self, ctx: RoundContext, received: Received) -> Received:
        """The round's sums after the stage's server half (rank 0)."""
        return received
