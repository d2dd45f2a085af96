"""The benchmark and soak scripts run on tiny sizes and write their results (no timing checks)."""

import json
import platform
import subprocess
import sys

import pytest

from fedrun.malloc import user_allocator_settings

from .conftest import REPO

pytestmark = pytest.mark.slow


def test_bench_runs_every_workload_small(tmp_path):
    out = tmp_path / "bench.json"
    p = subprocess.run(
        [sys.executable, "-m", "fedrun.bench", "--small", "--repeat", "1", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr + p.stdout
    res = json.loads(out.read_text())
    assert set(res) == {"A", "B", "C", "D", "E"}
    for name in "ABC":
        r = res[name]
        assert [run["rounds"] for run in r["runs"]["torchrun"]] == [3]
        assert [run["rounds"] for run in r["runs"]["python -m fedrun"]] == [3]
        assert r["fedrun"]["round_s"] > 0 and r["ceiling"]["round_s"] > 0
        by = r["fedrun"]["round_s_by_launcher"]
        assert (
            set(by)
            == set(r["throughput_vs_ceiling_by_launcher"])
            == {"torchrun", "python -m fedrun"}
        )
        assert by["torchrun"] == r["runs"]["torchrun"][0]["round_s"]  # one run: its own value
        assert set(r["end_to_end_s"]) == {"torchrun", "python -m fedrun", "bare"}
        # the ceiling's processes run with fedrun's allocator setting, where there is one
        expected = platform.libc_ver()[0] == "glibc" and not user_allocator_settings()
        assert [run["malloc_retained"] for run in r["runs"]["ceiling"]] == [expected]
    d = res["D"]["1000000"]
    assert d["memcpy_GBps"] > 0 and d["shm_GBps"] > 0 and d["gloo_GBps"] > 0
    assert [run["clients"] for run in res["E"]["runs"]] == [20, 200]
    assert "throughput" in p.stdout and f"wrote {out}" in p.stdout


def test_contenders_take_turns_going_first(monkeypatch):
    """Repeats rotate the order: each contender goes first once in four repeats, so none is
    always measured right after the same other one."""
    from fedrun import bench

    order: list[str] = []
    run = {"round_s": 1.0, "startup_s": 1.0, "end_to_end_s": 1.0, "rounds": 3}
    monkeypatch.setattr(bench, "run_fedrun", lambda j, out, k: order.append(k) or dict(run))
    monkeypatch.setattr(bench, "run_bare", lambda j: order.append("bare") or dict(run))
    monkeypatch.setattr(bench, "run_ceiling", lambda j: order.append("ceiling") or dict(run))
    res = bench.workload(bench.job("A", small=True), repeat=4)
    rounds = [order[i : i + 4] for i in range(0, 16, 4)]
    assert [r[0] for r in rounds] == ["torchrun", "python -m fedrun", "bare", "ceiling"]
    assert all(sorted(r) == sorted(rounds[0]) for r in rounds)  # each runs once per repeat
    assert {k: len(v) for k, v in res["runs"].items()} == dict.fromkeys(rounds[0], 4)


def test_soak_script_small():
    p = subprocess.run(
        [sys.executable, "bench/soak.py", "--clients", "60", "--rounds", "30", "--early", "5",
         "--per-round", "10"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert set(summary["samples"]["early"]) == {"0", "1", "2"}
    assert set(summary["samples"]["late"]) == {"0", "1", "2"}
