"""The Python API: `run` inside a torchrun process, `launch` to start the processes."""

from __future__ import annotations

import uuid
from typing import Any

from fedrun.config import Config
from fedrun.errors import FedrunError


def run(config: Config) -> dict[str, Any] | None:
    """Run `config` in this process, which torchrun (or `launch`) started as one rank of the
    job. Returns the summary on rank 0 (None on workers); raises FedrunError on failure."""
    from fedrun.comm import LaunchEnv
    from fedrun.main import execute

    env = LaunchEnv.from_environ()
    code, summary = execute(config.validate(), env)
    if code:
        raise FedrunError(f"the run failed (exit code {code}); the cause is printed above")
    return summary


def launch(
    config: Config,
    nproc_per_node: int = 3,
    max_restarts: int = 0,
    monitor_interval: float = 0.1,
) -> dict[str, Any]:
    """Start `nproc_per_node` processes on this machine through torch.distributed's elastic
    launcher (what torchrun uses), run `config` in them, and return rank 0's summary. For a
    script or a notebook; on a cluster use torchrun and launch/."""
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config.validate()  # fail here, before any process starts
    lc = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc_per_node,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        max_restarts=max_restarts,
        monitor_interval=monitor_interval,
        start_method="spawn",
    )
    results = elastic_launch(lc, entrypoint=run)(config)
    return results[0]
