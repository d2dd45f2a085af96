"""One packed uplink buffer, summed onto rank 0 by one reduce-SUM."""

from __future__ import annotations

import torch

from fedrun.comm import Comm
from fedrun.wire import Group


class SumGroup:
    """Workers accumulate their clients' contributions in `views` (on the compute device) and
    `send()`; rank 0 `receive()`s the sums over all workers (it adds zeros)."""

    shareable = True  # one host, gloo on CPU: the buffer may live in shared-memory slots

    def __init__(self, comm: Comm, group: Group, device: torch.device) -> None:
        self.comm, self.group, self.device = comm, group, device
        self.use_buffer(torch.zeros(group.numel, dtype=group.dtype, device=comm.buffer_device))

    def use_buffer(self, buf: torch.Tensor) -> None:
        """Reduce through `buf` (e.g. a shared-memory slot). A worker accumulates in place there
        when it is on the compute device: the buffer is only the collective's scratch, and the
        sums are zeroed at the start of every round anyway."""
        self.buf = buf
        same = self.comm.rank == 0 or buf.device == self.device
        self.work = buf if same else torch.zeros_like(buf, device=self.device)
        self.views = self.group.views(self.work)

    @property
    def nbytes(self) -> int:
        return self.buf.numel() * self.buf.element_size()

    # -- worker side -------------------------------------------------------------------------

    def reset(self) -> None:
        self.work.zero_()

    def flush(self) -> None:
        """Move the sums into the collective's buffer (before any of the round's reduces)."""
        if self.work.data_ptr() != self.buf.data_ptr():
            self.buf.copy_(self.work)

    def send(self) -> None:
        self.comm.reduce_sum(self.buf)

    # -- server side -------------------------------------------------------------------------

    def receive(self) -> dict[str, torch.Tensor]:
        self.buf.zero_()  # the server contributes zeros
        self.comm.reduce_sum(self.buf)
        return self.group.views(self.buf)
