"""How client updates travel from workers to the server in a round.

The round loops talk to an exchange, never to the collective: a worker `reset()`s it, `add()`s
each trained client's update, and `send()`s once; the server `receive()`s a RoundUpdates for the
strategy. The strategy names the exchange it needs (`Strategy.reduction`). "sum" pre-sums on the
workers and does ONE reduce-SUM of [U | stats]. A "gather" exchange for robust aggregation
(every sampled client's vector on rank 0) fits the same four calls: the number of sampled clients
per worker is known to every rank from (seed, round), so its buffers have fixed sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedrun.comm import Comm
from fedrun.protocol import TrainSlot


@dataclass
class RoundUpdates:
    """What the server receives in one round."""

    update_sum: torch.Tensor  # U = sum_k a_k (w_k - w)
    weight: float  # A = sum_k a_k
    stats: list[float]  # the TrainSlot scalars, summed over workers


class SumExchange:
    def __init__(self, comm: Comm, numel: int, dtype: torch.dtype, device: torch.device) -> None:
        self.comm, self.numel = comm, numel
        self.buf = torch.zeros(numel + len(TrainSlot), dtype=dtype, device=comm.buffer_device)
        self.update = torch.zeros(numel, dtype=dtype, device=device) if comm.rank else None

    # -- worker side -------------------------------------------------------------------------

    def reset(self) -> None:
        self.update.zero_()  # type: ignore[union-attr]

    def add(self, client_id: int, delta: torch.Tensor, weight: float) -> None:
        self.update.add_(delta, alpha=weight)  # type: ignore[union-attr]

    def send(self, stats: list[float]) -> None:
        self.buf[: self.numel].copy_(self.update)  # type: ignore[arg-type]
        self.buf[self.numel :] = torch.tensor(stats, dtype=self.buf.dtype)
        self.comm.reduce_sum(self.buf)

    # -- server side -------------------------------------------------------------------------

    def receive(self) -> RoundUpdates:
        self.buf.zero_()  # the server contributes zeros
        self.comm.reduce_sum(self.buf)
        stats = self.buf[self.numel :].tolist()
        return RoundUpdates(self.buf[: self.numel], stats[TrainSlot.WEIGHT], stats)


EXCHANGES = {"sum": SumExchange}


def make_exchange(reduction: str, comm: Comm, numel: int, dtype: torch.dtype, device: torch.device):
    return EXCHANGES[reduction](comm, numel, dtype, device)
