"""The exchange over a recording fake Comm: every rank's collectives in one process, in order.

The fake runs the ranks one after another: workers' calls are queued per collective and rank 0's
call of the same index sums them (reduce) or hands its tensor out (broadcast), which is what the
real collectives do when every rank enters them in the same order."""

from __future__ import annotations

from collections import defaultdict

import torch

from fedrun.exchange.packed import Exchange
from fedrun.protocol import Command
from fedrun.wire import Segment, WirePlan


class FakeWorld:
    def __init__(self) -> None:
        self.queued: dict[int, list[torch.Tensor]] = defaultdict(list)
        self.sent: dict[int, torch.Tensor] = {}


class FakeComm:
    def __init__(self, world: FakeWorld, rank: int, world_size: int = 3) -> None:
        self.world, self.rank, self.world_size = world, rank, world_size
        self.device = self.buffer_device = torch.device("cpu")
        self.calls: list[tuple[str, torch.dtype, int]] = []
        self.tensors: list[torch.Tensor] = []

    def _record(self, op: str, t: torch.Tensor) -> int:
        self.calls.append((op, t.dtype, t.numel()))
        self.tensors.append(t)
        return len(self.calls) - 1

    def reduce_sum(self, t: torch.Tensor) -> None:
        i = self._record("reduce", t)
        if self.rank:
            self.world.queued[i].append(t.clone())
        else:
            for x in self.world.queued.pop(i):
                t.add_(x)

    def broadcast(self, t: torch.Tensor) -> None:
        i = self._record("broadcast", t)
        if self.rank == 0:
            self.world.sent[i] = t.clone()
        else:
            t.copy_(self.world.sent[i])

    def share_vectors(self, bcast, reduce_buf):
        return bcast, reduce_buf


def _ranks(plan: WirePlan, world_size: int = 3):
    world = FakeWorld()
    comms = [FakeComm(world, r, world_size) for r in range(world_size)]
    return comms, [Exchange(plan, c, c.device) for c in comms]


def test_counts_above_2_to_the_24_are_exact():
    """The statistics travel in float64: 2 workers x (2**24 + 1) examples is 2**25 + 2 on rank
    0. In the vector's float32 (where they rode before) 2**24 + 1 is already 2**24."""
    plan = WirePlan.default(4, torch.float32)
    comms, (server, *workers) = _ranks(plan)
    big = 2**24 + 1
    assert float(torch.tensor(float(big), dtype=torch.float32)) == 2**24
    for x in workers:
        sums, stats = x.reset()
        sums["update"].add_(torch.ones(4))
        stats["examples"] = stats["weight"] = float(big)
        x.send(stats)
    got = server.receive()
    assert got.stats["examples"] == 2 * big == got.weight
    assert torch.equal(got.update, torch.full((4,), 2.0))


def test_one_broadcast_and_one_reduce_per_group_stats_first():
    """A SCAFFOLD-shaped plan (c down beside w, delta_c up beside U): one broadcast, then the
    float64 statistics reduce, then ONE float32 reduce carrying U and delta_c; every rank the
    same calls in the same order, every tensor on the buffer device."""
    plan = (
        WirePlan.default(5, torch.float32)
        .with_downlink(Segment("c", 5, torch.float32))
        .with_uplink(Segment("delta_c", 5, torch.float32))
    )
    comms, (server, *workers) = _ranks(plan)
    server.downlink["w"].fill_(1.5)
    server.downlink["c"].fill_(-2.0)
    server.broadcast(Command.TRAIN, 7)
    for i, x in enumerate(workers, start=1):
        assert x.wait_broadcast() == (Command.TRAIN, 7)
        assert torch.equal(x.downlink["c"], torch.full((5,), -2.0))
        assert torch.equal(x.global_vec, torch.full((5,), 1.5))
        sums, stats = x.reset()
        sums["update"].fill_(i)
        sums["delta_c"].fill_(10 * i)
        x.send(stats)
    got = server.receive()
    assert torch.equal(got.sums["update"], torch.full((5,), 3.0))
    assert torch.equal(got.sums["delta_c"], torch.full((5,), 30.0))
    expected = [
        ("broadcast", torch.float32, 2 + 10),
        ("reduce", torch.float64, len(plan.stats)),
        ("reduce", torch.float32, 10),
    ]
    for c in comms:
        assert c.calls == expected
        assert all(t.device == c.buffer_device for t in c.tensors)


def test_a_worker_resets_its_sums_every_round():
    comms, (server, worker) = _ranks(WirePlan.default(2, torch.float32), world_size=2)
    for value in (5.0, 1.0):
        sums, stats = worker.reset()
        assert not sums["update"].any() and not any(stats.values())
        sums["update"].add_(value)
        worker.send(stats)
        assert torch.equal(server.receive().update, torch.full((2,), value))
