"""Entry point: `torchrun --nproc_per_node=3 -m fedrun.main [flags]`.

Rank 0 becomes the server, every other rank a client worker. Start-up order: launch environment
-> config (validated identically on every rank, before any collective) -> process group ->
role set-up -> one all-gather handshake (set-up status, model layout hash, config hash) -> rounds.
"""

from __future__ import annotations

import copy
import gc
import os
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.distributed.elastic.multiprocessing.errors import record

from fedrun import checks, malloc
from fedrun.comm import Comm, LaunchEnv
from fedrun.config import Config, build_parser, parse_args, resolve_clients_per_round, to_toml
from fedrun.errors import Aborted, FedrunError, JoinTimeout, PeerLost, say
from fedrun.seeding import digest63

if TYPE_CHECKING:
    from fedrun.server import Server
    from fedrun.worker import Worker


def _show_cause(cause: str) -> None:
    """A set-up failure: a traceback as it is, a diagnosed error as one line."""
    if cause.startswith("Traceback"):
        print(cause, file=sys.stderr, end="", flush=True)
    else:
        say(cause)


def _said_once(e: FedrunError, shows: bool, wait: float = 3) -> int:
    """An error several ranks meet: every one writes the line to its error file (torchrun's
    summary shows the first rank to exit), the one that `shows` also prints it; the others wait
    `wait` s before exiting, because torchrun kills the remaining ranks at the first exit and
    the line must not die with the rank that prints it."""
    say(str(e), show=shows)
    if not shows:
        time.sleep(wait)
    return e.exit_code


def set_threads(cfg: Config, env: LaunchEnv) -> int:
    """Torch threads per process: cores / local processes unless --threads says otherwise, so
    the processes of one node never oversubscribe its cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = cfg.runtime.threads or max(1, (cores or 1) // env.local_world_size)
    torch.set_num_threads(n)
    return n


def set_deterministic(on: bool) -> None:
    """--deterministic: the settings that make CUDA kernels repeat bit for bit. Set before any
    CUDA work (cuBLAS reads its workspace variable when it starts)."""
    if not on:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def config_digest(cfg: Config) -> int:
    return digest63(to_toml(cfg))


def environment_digest(cfg: Config) -> int:
    """What makes ranks compute the same samples and partitions from the same seed: the torch
    and numpy versions (their RNGs draw the sampling and the partitions), and the first rounds'
    client samples themselves."""
    from fedrun.sampling import sample_clients

    k = resolve_clients_per_round(cfg.fed.clients_per_round, cfg.fed.num_clients)
    samples = [sample_clients(cfg.fed.num_clients, k, cfg.fed.seed, r) for r in (1, 2, 3)]
    return digest63(f"torch {torch.__version__} numpy {np.__version__} | {samples}")


def handshake(comm: Comm, status: int, spec_digest: int, cfg: Config) -> list[int]:
    """One all-gather: every rank learns which set-ups failed (returned) and whether the rest
    agree on model layout, config and environment (raises if not)."""
    rows = comm.all_gather_ints([status, spec_digest, config_digest(cfg), environment_digest(cfg)])
    failed = [r for r, row in enumerate(rows) if row[0] != 0]
    if failed:
        return failed
    for i, what, fix in (
        (1, "model layouts (names/shapes/dtypes)", "use the same fedrun and torch on every node"),
        (2, "configs", "pass the same flags and config file on every node"),
        (
            3,
            f"torch/numpy versions or client samples (rank 0: torch {torch.__version__}, numpy "
            f"{np.__version__})",
            "install the same torch and numpy on every node",
        ),
    ):
        odd = [r for r, row in enumerate(rows) if row[i] != rows[0][i]]
        if odd:
            raise FedrunError(f"ranks {odd} have different {what} from rank 0; {fix}")
    return []


@record
def main(argv: list[str] | None = None) -> int:
    """The CLI: parse flags, run, return the exit code (0 ok, 1 failure, 2 bad input)."""
    args = sys.argv[1:] if argv is None else argv
    if "-h" in args or "--help" in args:  # with or without torchrun; once per node
        if os.environ.get("LOCAL_RANK", "0") == "0":
            build_parser(checks.registry_choices()).print_help()
        return 0
    try:
        env = LaunchEnv.from_environ()
    except FedrunError as e:
        say(str(e))
        return e.exit_code
    try:
        cfg = checks.validate(parse_args(argv))
    except FedrunError as e:
        return _said_once(e, env.local_rank == 0)
    return execute(cfg, env)[0]


def execute(cfg: Config, env: LaunchEnv) -> tuple[int, dict[str, Any] | None]:
    """Run a validated config in this process; (exit code, rank 0's summary or None)."""
    set_threads(cfg, env)
    set_deterministic(cfg.runtime.deterministic)
    malloc.configure(cfg.runtime.malloc)
    try:
        comm = Comm(env, cfg.runtime)
    except JoinTimeout as e:  # the ranks' deadlines expire seconds apart
        return _said_once(e, e.reporter, wait=5), None
    except FedrunError as e:  # alike on every rank (config, launch): local rank 0 prints it
        return _said_once(e, env.local_rank == 0), None

    # Each rank imports its own role only (a worker has no use for the server's outputs,
    # reports and checkpoints: ~20 ms of its start-up).
    if env.rank == 0:
        from fedrun.server import Server as Role
    else:
        from fedrun.worker import Worker as Role  # type: ignore[assignment]

    cfg = copy.deepcopy(cfg)  # the caller's object stays as it was (fedrun.run in a loop)
    role: Server | Worker | None = None
    status, cause = 0, ""
    try:
        role = Role(cfg, comm)
    except FedrunError as e:
        status, cause = e.exit_code, str(e)
    except Exception:  # noqa: BLE001 - shown once, after the handshake tells every rank
        status, cause = 1, traceback.format_exc()
    in_step = False  # True once the outcome is known to every rank alike
    try:
        failed = handshake(comm, status, role.spec.digest() if role else 0, cfg)
        if failed:
            # Ranks often fail set-up alike (the same missing files): the lowest failing rank
            # shows its cause once; the others exit a moment later, so torchrun's summary
            # names the rank that printed.
            in_step = True
            if env.rank == failed[0]:
                _show_cause(cause)
            else:
                time.sleep(2)
            return status or 1, None
        role.share_memory()  # type: ignore[union-attr]
        # Set-up leaves ~10^5 long-lived objects (torch, data, model); frozen, the collector
        # never rescans them (a full collection in round 2 took ~85 ms per worker).
        gc.freeze()
        summary = role.run()  # type: ignore[union-attr]
        in_step = True
        return 0, summary
    except PeerLost as e:
        if cause:  # the handshake never completed: this rank's own set-up failure first
            _show_cause(cause)
        say(str(e))
        time.sleep(1)  # let torchrun see the rank that really died first: its summary blames it
        return 1, None  # in_step stays False: no barrier with a rank that is gone
    except Aborted:
        in_step = True
        time.sleep(2)  # let the server print the cause before torchrun reaps the group
        return 1, None
    except FedrunError as e:
        in_step = True
        say(str(e))
        return e.exit_code, None
    finally:
        comm.close(in_step)


if __name__ == "__main__":
    code = main()
    # Leave without interpreter finalisation: gloo's C++ threads racing Python's teardown
    # aborted ~1 run in 15 at exit ("terminate called without an active exception") even after
    # a barrier and destroy_process_group. Everything is written and flushed by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
