"""Tensors in shared-memory files, for moving the model vector between ranks on one host.

gloo on one machine still goes through TCP loopback (~2 GB/s here, a copy into and out of the
kernel per hop); ranks that map the same tmpfs file exchange the vector at memory speed, and a
broadcast needs no copy at all. This module only makes and maps the files; `comm.SharedVectors`
decides when to use them and keeps the ranks in step.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
from pathlib import Path

import torch


class NoRoom(OSError):
    """The tmpfs cannot hold the file (checked up front: a full tmpfs is a SIGBUS later)."""


def create(path: Path, numel: int, dtype: torch.dtype) -> torch.Tensor:
    """A new zeroed file of `numel` elements, mapped; its pages are reserved now, so a tmpfs
    that is too small fails here with NoRoom rather than killing the process on first touch."""
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, nbytes)
            else:  # no reservation where the OS has no fallocate (macOS): size only
                os.ftruncate(fd, nbytes)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EFBIG, errno.ENOMEM):
                free = _free_bytes(path.parent)
                raise NoRoom(
                    e.errno,
                    f"{path.parent} has {free / 2**20:.0f} MiB free, needs "
                    f"{nbytes / 2**20:.0f} MiB more",
                ) from None
            raise
        return _map(fd, numel, dtype, nbytes)
    finally:
        os.close(fd)


def attach(path: Path, numel: int, dtype: torch.dtype) -> torch.Tensor:
    """Map a file another rank created."""
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    fd = os.open(path, os.O_RDWR)
    try:
        if os.fstat(fd).st_size < nbytes:
            raise OSError(f"{path} is smaller than {nbytes} bytes")
        return _map(fd, numel, dtype, nbytes)
    finally:
        os.close(fd)


def unlink(path: Path) -> None:
    """Remove the name; mappings stay valid until their processes exit."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def remove_earlier_attempts(directory: Path, job: str, attempt: int) -> list[Path]:
    """Remove this job's files of attempts before `attempt` (`fedrun-<job>-a<k>-*`, k <
    attempt): a rank killed between making its file and the unlink after the barrier leaves
    one behind, and torchrun restarts the group with a new attempt number. Returns them."""
    gone = []
    for path in directory.glob(f"fedrun-{job}-a*-*"):
        k = path.name[len(f"fedrun-{job}-a") :].split("-", 1)[0]
        if k.isdigit() and int(k) < attempt:
            unlink(path)
            gone.append(path)
    return gone


def _map(fd: int, numel: int, dtype: torch.dtype, nbytes: int) -> torch.Tensor:
    if nbytes == 0:
        return torch.empty(0, dtype=dtype)
    buf = mmap.mmap(fd, nbytes, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    return torch.frombuffer(buf, dtype=dtype, count=numel)  # keeps `buf` alive


def _free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize
