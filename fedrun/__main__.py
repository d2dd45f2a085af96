"""`python -m fedrun [--nproc-per-node N] [--max-restarts K] [fedrun flags]`: one node, no torchrun.

The same job as `torchrun --nproc_per_node=N -m fedrun.main [flags]`, through the same elastic
agent, but the ranks are forked from a fork server that imported torch and fedrun once, and the
rendezvous is static: on a small machine that saves seconds of start-up (3 ranks importing torch
on 2 cores take ~1.8 s). Across nodes, use torchrun (launch/, docs/cluster.md).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from fedrun import checks
from fedrun.api import launch, start_fork_server, stop_fork_server
from fedrun.config import build_parser, parse_args
from fedrun.errors import ConfigError, FedrunError, say

USAGE = "python -m fedrun [--nproc-per-node N] [--max-restarts K] [fedrun flags]"


def launcher_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m fedrun", usage=USAGE, add_help=False)
    ap.add_argument(
        "--nproc-per-node", "--nproc_per_node", type=int, default=3,
        help="processes: rank 0 is the server, the rest host the clients (default 3)",
    )  # fmt: skip
    ap.add_argument(
        "--max-restarts", "--max_restarts", type=int, default=0,
        help="restart the group this often after a rank dies; it resumes from its checkpoint",
    )  # fmt: skip
    return ap


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    launcher = launcher_parser()
    if "-h" in args or "--help" in args:
        launcher.print_help()
        print()
        build_parser(checks.registry_choices()).print_help()
        return 0
    opts, rest = launcher.parse_known_args(args)
    try:
        if opts.nproc_per_node < 2:
            raise ConfigError(
                "--nproc-per-node",
                f"{opts.nproc_per_node} is too few",
                "fedrun needs a server rank and at least one client worker, e.g. 3",
            )
        if opts.max_restarts < 0:
            raise ConfigError("--max-restarts", "must be >= 0", "e.g. 1")
    except FedrunError as e:
        say(str(e))
        return e.exit_code
    # first: it imports torch and fedrun while this process imports them to validate
    start_fork_server()
    try:
        return _validate_and_launch(rest, opts.nproc_per_node, opts.max_restarts)
    finally:
        stop_fork_server()


def _validate_and_launch(rest: list[str], nproc_per_node: int, max_restarts: int) -> int:
    try:
        cfg = checks.validate(parse_args(rest))
    except FedrunError as e:
        say(str(e))
        return e.exit_code

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # On a failure the agent logs the rank's traceback and each rank it terminates; the rank
    # printed the cause already, and the last line names the failed ranks.
    for name in ("torch.distributed.elastic.multiprocessing.api", "torch.multiprocessing.spawn"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        launch(cfg, nproc_per_node, max_restarts)
    except ChildFailedError as e:
        ranks = sorted(e.failures)
        codes = sorted({f.exitcode for f in e.failures.values()})
        say(
            f"rank(s) {ranks} failed (exit code {', '.join(map(str, codes))}); "
            "the cause is printed above"
        )
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    # Leave without interpreter finalisation: with torch imported it takes ~0.3 s of the job's
    # end to end, and there is nothing left to do (the ranks have exited, the fork server is
    # stopped). Only buffered output remains: flush it.
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a reader that left (`| head`) takes nothing more
            stream.flush()
    os._exit(code)
