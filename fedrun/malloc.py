"""How a rank's C allocator treats freed memory (glibc on Linux; elsewhere nothing changes).

glibc hands freed memory at the top of its heap back to the kernel once it exceeds a trim
threshold, and serves blocks above an mmap threshold with fresh mappings that are unmapped on
free; by default both thresholds move with the sizes freed so far. A training step frees and
reallocates the same few MB of activations and gradients, and under those moving thresholds a
worker can give them back and fault them in again every step: in the seed CNN job one worker
in two took ~50,000 page faults (200 MB) per round that way and ran 5-15% slower than the same
loop without them. `retain` fixes both thresholds so that blocks under 32 MiB come from the heap
and the main thread's heap keeps up to 1 GiB of free memory for the next step (other threads'
arenas still unmap a heap that empties entirely; training allocates on the main thread), as CPU
training launchers do with jemalloc's decay settings and as CUDA's caching allocator does on a
GPU. Freed blocks are reused first, so the peak barely moves (bench E: server 585 MiB, 583
before); memory freed after the peak stays with the process.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Mapping

M_TRIM_THRESHOLD = -1  # mallopt parameters, <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit (4 MiB x sizeof(long))
# (on 32-bit glibc allows 512 KiB: the call fails there, and the trim threshold alone is set)
TRIM_THRESHOLD = 1 << 30
# the environment variables through which a user can set the thresholds themselves
USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES", "LD_PRELOAD")


def user_allocator_settings(environ: Mapping[str, str] = os.environ) -> str:
    """The environment variable through which the user set the same thresholds, or "": glibc's
    MALLOC_TRIM_THRESHOLD_ / MALLOC_MMAP_THRESHOLD_, their GLIBC_TUNABLES forms, or another
    allocator preloaded (jemalloc, tcmalloc, mimalloc). Their settings win."""
    for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"):
        if name in environ:
            return name
    tunables = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.trim_threshold" in tunables or "glibc.malloc.mmap_threshold" in tunables:
        return "GLIBC_TUNABLES"
    if "malloc" in environ.get("LD_PRELOAD", ""):
        return "LD_PRELOAD"
    return ""


def configure(mode: str) -> bool:
    """Apply `mode` (`retain` or `system`) to this process for the rest of its life; True if both
    thresholds were set. `system` leaves glibc's defaults; so does any platform without glibc's
    mallopt, and any environment in which the user set the thresholds. Nothing resets them: in a
    process that already ran with `retain` (`fedrun.run` twice), `system` changes nothing."""
    if mode != "retain" or platform.libc_ver()[0] != "glibc" or user_allocator_settings():
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success; setting either threshold also stops glibc moving them
    mmap_set = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    trim_set = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return bool(mmap_set and trim_set)
