"""Shared helpers: launching fedrun through torchrun under a timeout."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from fedrun.comm import free_port

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Launch:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    out: Path

    def model(self) -> dict[str, torch.Tensor]:
        return torch.load(self.out / "final_model.pt", weights_only=True)


def torchrun(
    nproc: int,
    *args: str,
    out: Path | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    module: str = "fedrun.main",
    cwd: Path = REPO,
    extra: list[str] | None = None,
) -> Launch:
    """`python -m torch.distributed.run --standalone` (a free rendezvous port picked by the OS)
    running fedrun with `args`, killed after `timeout` seconds."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        *(extra or []),
        "-m",
        module,
        *args,
    ]
    if out is not None:
        cmd += ["--out", str(out)]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd)
    return Launch(p.returncode, p.stdout, p.stderr, time.perf_counter() - t0, out or REPO)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@dataclass
class RankResult:
    returncode: int
    stdout: str
    stderr: str


def spawn_ranks(world: int, *args: str, timeout: float = 60) -> tuple[list[RankResult], float]:
    """Start the ranks as plain processes (no torchrun agent that would kill the others), on a
    free port, so each rank's own exit code is observed. Returns (results, seconds)."""
    port = free_port()
    procs = []
    t0 = time.perf_counter()
    for rank in range(world):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        env.pop("TORCHELASTIC_ERROR_FILE", None)
        cmd = [sys.executable, "-m", "fedrun.main", *args]
        procs.append(
            subprocess.Popen(
                cmd, env=env, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(1.0, timeout - (time.perf_counter() - t0)))
            results.append(RankResult(p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results, time.perf_counter() - t0
