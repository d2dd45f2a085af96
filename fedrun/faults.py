"""Fault injection for tests and chaos drills.

FEDRUN_FAULT="point:rank:round" makes that rank SIGKILL itself at that point of that round, on
the first attempt only, so a group restarted by torchrun runs clean. Points: "join" (round 0:
the rank hangs for good instead, before joining the process group: a stuck rank, not a dead
one, which its launcher would notice), "broadcast" (server,
before the round's broadcast), "train" (worker, after its first client of the round), "reduce"
(before entering the round's reduce), "checkpoint" (server, checkpoint written to its temporary
file but not yet renamed), "shm" (round 0: after a shared-memory step of set-up, the files made
and not yet unlinked).
"""

from __future__ import annotations

import os
import signal
import sys
import time

POINTS = ("join", "shm", "broadcast", "train", "reduce", "checkpoint")


def maybe_crash(point: str, rank: int, round_: int) -> None:
    assert point in POINTS, point
    spec = os.environ.get("FEDRUN_FAULT")
    if not spec or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0:
        return
    where, who, when = spec.split(":")
    if where == point and int(who) == rank and int(when) == round_:
        while point == "join":
            time.sleep(3600)
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
