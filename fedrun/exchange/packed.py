"""The round's buffers, packed from the wire plan, and the order of its collectives.

    downlink: one buffer per dtype; the one holding w starts with the (command, round) header.
              Every rank enters every downlink broadcast, in plan order, every round.
    uplink:   the float64 statistics group first (a plain gloo/NCCL reduce), then one group per
              (operation, dtype) of the plan's segments, in plan order.

The statistics first is what makes the shared-memory path safe: workers write their slots
before they enter that reduce, so once it completes on rank 0 every slot is written and rank 0
adds them (fedrun.comm.Comm.reduce_sum); a worker writes its slot again only after the next
broadcast, which rank 0 sends after it has summed.
"""

from __future__ import annotations

import torch

from fedrun.comm import Comm
from fedrun.exchange.sum import SumGroup
from fedrun.protocol import HEADER, Command, EvalSlot, Received
from fedrun.registry import EXCHANGES
from fedrun.wire import STATS_DTYPE, WirePlan, pack


class Exchange:
    def __init__(self, plan: WirePlan, comm: Comm, device: torch.device) -> None:
        plan.check()
        self.plan, self.comm, self.device = plan, comm, device
        bdev = comm.buffer_device
        self.down_groups = pack(plan.downlink, lead_in="w", lead=HEADER)
        self.down_bufs = [
            torch.zeros(g.numel, dtype=g.dtype, device=bdev) for g in self.down_groups
        ]
        stats, *vectors = pack(plan.uplink_with_stats())
        self.stats = SumGroup(comm, stats, bdev)
        self.groups = [EXCHANGES.load(g.op)(comm, g, device) for g in vectors]
        self.eval_buf = torch.zeros(len(EvalSlot), dtype=torch.float64, device=bdev)
        self._bind_downlink()

    def _bind_downlink(self) -> None:
        """Views of the downlink segments on the compute device: the broadcast buffers
        themselves where they are there (nothing writes them before the next broadcast, which
        follows this round's reduces), else copies refreshed after each broadcast."""
        self.header = self.down_bufs[0][:HEADER]
        same = self.comm.rank == 0 or all(b.device == self.device for b in self.down_bufs)
        self.down_work = (
            self.down_bufs
            if same
            else [torch.zeros_like(b, device=self.device) for b in self.down_bufs]
        )
        self.downlink: dict[str, torch.Tensor] = {}
        for g, b in zip(self.down_groups, self.down_work, strict=True):
            self.downlink.update(g.views(b))

    @property
    def global_vec(self) -> torch.Tensor:
        """w: on rank 0 the global model itself (it lives in the broadcast buffer)."""
        return self.downlink["w"]

    def share(self) -> None:
        """After the handshake, on every rank: the w buffer and the update's group may move to
        shared memory (fedrun.comm.Comm.share_vectors), their contents kept."""
        big = next(
            (g for g in self.groups if getattr(g, "shareable", False) and "update" in g.views),
            None,
        )
        if big is None:
            return
        bcast, buf = self.comm.share_vectors(self.down_bufs[0], big.buf)
        if bcast is not self.down_bufs[0]:
            self.down_bufs[0] = bcast
            big.use_buffer(buf)
            self._bind_downlink()

    @property
    def down_nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.down_bufs)

    @property
    def up_nbytes(self) -> int:
        return self.stats.nbytes + sum(g.nbytes for g in self.groups)

    # -- downlink ----------------------------------------------------------------------------

    def broadcast(self, command: Command, round_: int) -> None:
        """Rank 0: send the header and every downlink segment as they are."""
        self.header[0], self.header[1] = float(command), float(round_)
        for b in self.down_bufs:
            self.comm.broadcast(b)

    def wait_broadcast(self) -> tuple[Command, int]:
        """A worker: receive the round's downlink; (command, round)."""
        for b in self.down_bufs:
            self.comm.broadcast(b)
        command, round_ = Command(int(self.header[0])), int(self.header[1])
        for src, dst in zip(self.down_bufs, self.down_work, strict=True):
            if dst.data_ptr() != src.data_ptr():
                dst.copy_(src)
        return command, round_

    # -- uplink, worker side -----------------------------------------------------------------

    def reset(self) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Zeroed sums (views by segment name, on the compute device) and statistics."""
        sums: dict[str, torch.Tensor] = {}
        for g in self.groups:
            g.reset()
            sums.update(g.views)
        return sums, dict.fromkeys(self.plan.stats, 0.0)

    def send(self, stats: dict[str, float]) -> None:
        for g in self.groups:
            g.flush()
        values = [float(stats[name]) for name in self.plan.stats]
        self.stats.buf.copy_(torch.tensor(values, dtype=STATS_DTYPE))
        self.stats.send()
        for g in self.groups:
            g.send()

    # -- uplink, server side -----------------------------------------------------------------

    def receive(self) -> Received:
        values = self.stats.receive()["stats"].tolist()
        sums: dict[str, torch.Tensor] = {}
        for g in self.groups:
            sums.update(g.receive())
        return Received(sums, dict(zip(self.plan.stats, values, strict=True)))

    # -- federated evaluation (float64 sums) -------------------------------------------------

    def send_eval(self, sums: list[float]) -> None:
        self.eval_buf.copy_(torch.tensor(sums, dtype=torch.float64))
        self.comm.reduce_sum(self.eval_buf)

    def receive_eval(self) -> list[float]:
        self.eval_buf.zero_()
        self.comm.reduce_sum(self.eval_buf)
        return self.eval_buf.tolist()
