"""The wire plan's packing (pure bookkeeping, no process group)."""

import pytest
import torch

from fedrun.protocol import BASE_STATS, HEADER
from fedrun.wire import BROADCAST, STATS_DTYPE, Segment, WirePlan, pack


def test_default_plan_is_fedavgs():
    plan = WirePlan.default(10, torch.float32)
    plan.check()
    assert [s.name for s in plan.downlink] == ["w"] and plan.downlink[0].op == BROADCAST
    assert [(s.name, s.numel, s.op) for s in plan.uplink] == [("update", 10, "sum")]
    assert plan.stats == BASE_STATS


def test_segments_sharing_op_and_dtype_pack_into_one_buffer():
    plan = (
        WirePlan.default(10, torch.float32)
        .with_downlink(Segment("c", 10, torch.float32))
        .with_uplink(Segment("delta_c", 10, torch.float32), Segment("n", 3, torch.int64))
        .with_stats("skipped")
    )
    plan.check()
    down = pack(plan.downlink, lead_in="w", lead=HEADER)
    assert len(down) == 1 and down[0].numel == HEADER + 20
    assert down[0].segments == (("w", HEADER, 10), ("c", HEADER + 10, 10))
    stats, f32, i64 = pack(plan.uplink_with_stats())
    assert (stats.dtype, stats.numel) == (STATS_DTYPE, len(BASE_STATS) + 1)
    assert (f32.dtype, f32.segments) == (torch.float32, (("update", 0, 10), ("delta_c", 10, 10)))
    assert (i64.dtype, i64.numel) == (torch.int64, 3)
    views = f32.views(torch.arange(20.0))
    assert views["delta_c"][0].item() == 10.0


@pytest.mark.parametrize(
    ("plan", "problem"),
    [
        (WirePlan.default(3, torch.float32).with_uplink(Segment("w", 3, torch.float32)), "unique"),
        (WirePlan((), (Segment("update", 3, torch.float32),)), "must be w"),
        (
            WirePlan.default(3, torch.float32).with_uplink(Segment("stats", 1, torch.float64)),
            "stats",
        ),
    ],
)
def test_bad_plans_are_refused(plan, problem):
    with pytest.raises(ValueError, match=problem):
        plan.check()


def test_a_statistic_declared_twice_is_refused():
    with pytest.raises(ValueError, match="declared twice"):
        WirePlan.default(3, torch.float32).with_stats("weight")
