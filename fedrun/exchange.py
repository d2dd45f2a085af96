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
        self.comm, self.numel, self.device = comm, numel, device
        self.use_buffer(torch.zeros(numel + len(TrainSlot), dtype=dtype, device=comm.buffer_device))

    def share(self, bcast: torch.Tensor) -> torch.Tensor:
        """After the handshake: move to shared memory where `Comm.share_vectors` does; returns
        the broadcast buffer to use from now on."""
        bcast, buf = self.comm.share_vectors(bcast, self.buf, self.numel)
        self.use_buffer(buf)
        return bcast

    def use_buffer(self, buf: torch.Tensor) -> None:
        """Reduce through `buf` (e.g. a shared-memory slot from `Comm.share_vectors`). A worker
        accumulates U in place there when it is on the compute device: the buffer is only
        scratch for the collective, and U is zeroed at the start of every round anyway."""
        self.buf = buf
        self.update: torch.Tensor | None = None
        if self.comm.rank:
            same = buf.device == self.device
            self.update = (
                buf[: self.numel]
                if same
                else torch.zeros_like(buf[: self.numel], device=self.device)
            )

    # -- worker side -------------------------------------------------------------------------

    def reset(self) -> None:
        self.update.zero_()  # type: ignore[union-attr]

    def add(self, client_id: int, delta: torch.Tensor, weight: float) -> None:
        self.update.add_(delta, alpha=weight)  # type: ignore[union-attr]

    def send(self, stats: list[float]) -> None:
        if self.update.data_ptr() != self.buf.data_ptr():  # type: ignore[union-attr]
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
