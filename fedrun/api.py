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
    start_method: str = "auto",
) -> dict[str, Any]:
    """Start `nproc_per_node` processes on this machine through torch.distributed's elastic
    launcher (what torchrun uses), run `config` in them, and return rank 0's summary. For a
    script, a notebook or `python -m fedrun`; across nodes use torchrun and launch/.

    `start_method` "auto" forks the ranks from this process where that is safe (Linux, CUDA not
    yet initialised here): they inherit torch and fedrun already imported, which on a small
    machine saves seconds of start-up (each rank would import torch anew); else "spawn"."""
    import multiprocessing

    import torch
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    import fedrun.main  # noqa: F401 - imported once here, inherited by forked ranks
    import fedrun.server  # noqa: F401
    import fedrun.worker  # noqa: F401
    from fedrun.comm import free_port

    config.validate()  # fail here, before any process starts
    if start_method == "auto":
        forkable = "fork" in multiprocessing.get_all_start_methods()
        start_method = "fork" if forkable and not torch.cuda.is_initialized() else "spawn"
    # One node: a static rendezvous on a free port (no c10d rendezvous rounds to wait for).
    port = free_port()
    lc = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc_per_node,
        run_id=str(uuid.uuid4()),
        rdzv_backend="static",
        rdzv_endpoint=f"127.0.0.1:{port}",
        rdzv_configs={"rank": 0},
        max_restarts=max_restarts,
        monitor_interval=monitor_interval,
        start_method=start_method,
    )
    results = elastic_launch(lc, entrypoint=run)(config)
    return results[0]
