"""Memory of a running job's ranks, read from /proc (Linux): for the soak and RSS benchmarks."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def descendants(pid: int) -> list[int]:
    """All processes below `pid` (torchrun's agent -> the ranks)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except (OSError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def memory_by_rank(pid: int, field: str = "VmRSS") -> dict[int, float]:
    """`field` of /proc/<p>/status (VmRSS now, VmHWM peak) in MiB for every rank under `pid`."""
    out = {}
    for p in descendants(pid):
        try:
            env = Path(f"/proc/{p}/environ").read_bytes().split(b"\0")
            rank = next(int(e[5:]) for e in env if e.startswith(b"RANK="))
            status = Path(f"/proc/{p}/status").read_text()
            kb = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith(field))
            out[rank] = kb / 1024
        except (OSError, StopIteration, ValueError):
            pass
    return out


def watch_ranks(
    proc: subprocess.Popen, field: str = "VmHWM", every: float = 0.05
) -> dict[int, float]:
    """Poll until `proc` exits; the largest `field` seen for each rank."""
    peak: dict[int, float] = {}
    while proc.poll() is None:
        for rank, mib in memory_by_rank(proc.pid, field).items():
            peak[rank] = max(peak.get(rank, 0.0), mib)
        time.sleep(every)
    return peak
