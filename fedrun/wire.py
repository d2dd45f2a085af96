"""The wire plan: which named segments travel in a round, and how they pack into buffers.

A strategy (and each stage) declares its segments; the exchange packs the segments that share
(operation, dtype) into one buffer, so a round is one broadcast per downlink dtype and one
collective per uplink (operation, dtype) group. The default plan is FedAvg's:

    downlink  w        P floats, broadcast  (after the 2-element header)
    uplink    update   P floats, sum        U = sum_k a_k (w_k - w)
              stats    float64, sum         BASE_STATS and whatever stages add

Pure bookkeeping: no collectives, testable without a process group.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from fedrun.protocol import BASE_STATS

BROADCAST = "broadcast"
STATS_DTYPE = torch.float64


@dataclass(frozen=True)
class Segment:
    name: str
    numel: int
    dtype: torch.dtype
    op: str = "sum"  # uplink: a key of fedrun.registry.EXCHANGES; downlink: BROADCAST


@dataclass(frozen=True)
class Group:
    """Segments packed into one buffer: (name, offset, numel) after `lead` leading elements."""

    op: str
    dtype: torch.dtype
    segments: tuple[tuple[str, int, int], ...]
    lead: int = 0

    @property
    def numel(self) -> int:
        return self.lead + sum(n for _, _, n in self.segments)

    def views(self, buf: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: buf[off : off + n] for name, off, n in self.segments}


def pack(segments: tuple[Segment, ...], lead_in: str = "", lead: int = 0) -> list[Group]:
    """Group segments by (op, dtype) in order of first appearance; the group holding segment
    `lead_in` starts with `lead` extra elements (the broadcast header)."""
    order: list[tuple[str, torch.dtype]] = []
    members: dict[tuple[str, torch.dtype], list[Segment]] = {}
    for s in segments:
        key = (s.op, s.dtype)
        if key not in members:
            order.append(key)
            members[key] = []
        members[key].append(s)
    groups = []
    for key in order:
        first = lead if any(s.name == lead_in for s in members[key]) else 0
        offset, packed = first, []
        for s in members[key]:
            packed.append((s.name, offset, s.numel))
            offset += s.numel
        groups.append(Group(key[0], key[1], tuple(packed), first))
    return groups


@dataclass(frozen=True)
class WirePlan:
    downlink: tuple[Segment, ...]
    uplink: tuple[Segment, ...]
    stats: tuple[str, ...] = BASE_STATS

    @classmethod
    def default(cls, numel: int, dtype: torch.dtype) -> WirePlan:
        return cls(
            downlink=(Segment("w", numel, dtype, BROADCAST),),
            uplink=(Segment("update", numel, dtype),),
        )

    def with_stats(self, *names: str) -> WirePlan:
        """The plan with more float64 statistics (names must be new)."""
        clash = set(names) & set(self.stats)
        if clash:
            raise ValueError(f"statistics {sorted(clash)} are declared twice")
        return replace(self, stats=self.stats + names)

    def with_uplink(self, *segments: Segment) -> WirePlan:
        return replace(self, uplink=self.uplink + segments)

    def with_downlink(self, *segments: Segment) -> WirePlan:
        return replace(
            self, downlink=self.downlink + tuple(replace(s, op=BROADCAST) for s in segments)
        )

    def check(self) -> None:
        """Names unique, the downlink holds w, the uplink holds no reserved name."""
        names = [s.name for s in self.downlink] + [s.name for s in self.uplink]
        if len(set(names)) != len(names):
            raise ValueError(f"segment names must be unique, got {names}")
        if not self.downlink or self.downlink[0].name != "w":
            raise ValueError("the first downlink segment must be w")
        if "stats" in names:
            raise ValueError(
                "'stats' is the statistics segment's name; add scalars with with_stats"
            )
        if len(set(self.stats)) != len(self.stats):
            raise ValueError(f"statistics names must be unique, got {self.stats}")

    def uplink_with_stats(self) -> tuple[Segment, ...]:
        """The uplink segments, the float64 statistics segment first."""
        return (Segment("stats", len(self.stats), STATS_DTYPE), *self.uplink)
