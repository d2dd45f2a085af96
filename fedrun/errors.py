"""Errors a user can act on. They print as one line, never as a traceback."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time


class FedrunError(Exception):
    """A failure with a cause the user can fix; `main` prints it as one line and exits non-zero."""

    exit_code = 1


class ConfigError(FedrunError):
    """A bad configuration value, flag or launch environment (exit code 2)."""

    exit_code = 2

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        msg = f"{field}: {problem}"
        if fix:
            msg += f"; {fix}"
        super().__init__(msg)


class Aborted(FedrunError):
    """A worker was told by the server to stop because of an error reported there."""


class PeerLost(FedrunError):
    """A collective failed because another rank died or hung; the group cannot continue."""


class JoinTimeout(FedrunError):
    """Not every rank joined at start-up; `reporter` is the one rank that prints the line."""

    def __init__(self, msg: str, reporter: bool) -> None:
        super().__init__(msg)
        self.reporter = reporter


def say(msg: str, show: bool = True) -> None:
    """Print a user error as one line, and hand the same line to torchrun's failure summary
    (its error file) so the summary names the cause instead of pointing at tracebacks."""
    line = f"fedrun: error: {msg}"
    if show:
        print(line, file=sys.stderr, flush=True)
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        extra = {"py_callstack": line, "timestamp": str(int(time.time()))}
        with contextlib.suppress(OSError), open(path, "w") as f:
            json.dump({"message": {"message": line, "extraInfo": extra}}, f)
