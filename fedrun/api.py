"""The Python API: `run` inside a torchrun process, `launch` to start the processes."""

from __future__ import annotations

import ast
import contextlib
import os
import signal
import sys
import tokenize
import uuid
from typing import Any

from fedrun import checks
from fedrun.config import Config
from fedrun.errors import FedrunError


def run(config: Config) -> dict[str, Any] | None:
    """Run `config` in this process, which torchrun (or `launch`) started as one rank of the
    job. Returns the summary on rank 0 (None on workers); raises FedrunError on failure. Like a
    rank, it sets this process's torch threads and allocator (`runtime.threads`, `.malloc`)."""
    from fedrun.comm import LaunchEnv
    from fedrun.main import execute

    env = LaunchEnv.from_environ()
    code, summary = execute(checks.validate(config), env)
    if code:
        raise FedrunError(f"the run failed (exit code {code}); the cause is printed above")
    return summary


# Imported once in the fork server and inherited by every rank forked from it.
RANK_MODULES = ["fedrun.main", "fedrun.server", "fedrun.worker"]


def has_fork_server() -> bool:
    """Whether multiprocessing offers a fork server here (POSIX)."""
    import multiprocessing

    return "forkserver" in multiprocessing.get_all_start_methods()


def start_fork_server() -> bool:
    """Start the single-threaded process the ranks will be forked from, and have it import torch
    and fedrun now: on a multi-core machine that overlaps with the caller's own imports. The
    ranks must not be forked from the launcher itself: by then its rendezvous store runs a
    server thread, and a child forked while that thread holds a lock can hang at start-up.
    Returns False where there is no fork server (not POSIX)."""
    if not has_fork_server():
        return False
    from multiprocessing import forkserver

    forkserver.set_forkserver_preload(RANK_MODULES)
    forkserver.ensure_running()
    return True


def stop_fork_server() -> None:
    """End the fork server once the ranks are gone. Left alone, it begins its exit only when
    this process exits, and its teardown (an interpreter holding torch: ~0.3 s) comes on top of
    ours while it holds the caller's stdout. It keeps no state: SIGKILL is enough."""
    from multiprocessing import forkserver

    server = forkserver._forkserver  # the stdlib's own instance; `_stop` is what its tests use
    pid = getattr(server, "_forkserver_pid", None)
    if pid is None:
        return
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        server._stop()  # reaps it and removes its socket


def _called_unguarded_from_main_script() -> bool:
    """True when this call comes from a script's code outside an `if __name__ == "__main__":`
    block (found in the script's syntax tree), which the ranks would run again on importing it.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path:  # python -c, a notebook, a REPL: nothing is re-imported
        return False
    line = None
    frame = sys._getframe(1)
    while frame is not None:  # the outermost statement of the script's own code
        if frame.f_globals is vars(main) and frame.f_code.co_name == "<module>":
            line = frame.f_lineno
        frame = frame.f_back
    if line is None:
        return False
    try:
        with tokenize.open(path) as f:  # the script's declared encoding
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return False
    return not _guarded(tree.body, line)


def _guarded(body: list[ast.stmt], line: int) -> bool:
    """Whether `line` lies, within these statements, in the branch of an `if` that runs only
    when `__name__ == "__main__"` (the `if` branch for ==, `else` for !=; any nesting)."""
    for node in body:
        if not node.lineno <= line <= (node.end_lineno or node.lineno):
            continue
        if isinstance(node, ast.If):
            op = _main_test(node.test)
            branch = node.body if op is ast.Eq else node.orelse if op is ast.NotEq else None
            if branch and any(s.lineno <= line <= (s.end_lineno or s.lineno) for s in branch):
                return True
        children = [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)]
        handlers = [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.ExceptHandler)]
        return _guarded(children, line) or any(_guarded(h.body, line) for h in handlers)
    return False


def _main_test(test: ast.expr) -> type | None:
    """ast.Eq / ast.NotEq when `test` compares `__name__` with "__main__" (either way round, or
    as the first operand of an `and` for ==); else None."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return ast.Eq if _main_test(test.values[0]) is ast.Eq else None
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return None
    sides = {ast.dump(test.left), ast.dump(test.comparators[0])}
    main = {ast.dump(ast.Name("__name__", ast.Load())), ast.dump(ast.Constant("__main__"))}
    return type(test.ops[0]) if sides == main and type(test.ops[0]) in (ast.Eq, ast.NotEq) else None


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

    `start_method` "auto" forks the ranks from a fork server that imported torch and fedrun
    once (`start_fork_server`), which on a small machine saves seconds of start-up (each rank
    would import torch anew); "spawn" where there is none."""
    checks.validate(config)  # fail here, before any process starts
    # "auto" with a fork server: this call starts it, and stops it at the end
    own_server = start_method == "auto" and has_fork_server()
    if start_method == "auto":
        start_method = "forkserver" if own_server else "spawn"
    if start_method != "fork" and _called_unguarded_from_main_script():
        raise FedrunError(
            "fedrun.launch: the ranks import your script, as multiprocessing does, and would "
            'call launch again; put the call under `if __name__ == "__main__":`'
        )
    if own_server:
        start_fork_server()

    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from fedrun.comm import free_port

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
    try:
        results = elastic_launch(lc, entrypoint=run)(config)
    finally:
        # one per launch: the ranks take their environment from it, as it was when it started
        if own_server:
            stop_fork_server()
    return results[0]
