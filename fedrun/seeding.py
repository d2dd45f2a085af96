"""Derived seeds: every random stream in fedrun is a pure function of (seed, purpose, ...).

Streams never depend on which rank computes them, so a client's update is the same whichever
worker hosts it, and no rank needs a message to agree on sampling.
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np


def derive_seed(seed: int, purpose: str, *keys: int) -> int:
    """A 63-bit seed for `purpose` ("sample", "client", ...) keyed by ints (round, client id)."""
    entropy = [int(seed) & 0xFFFFFFFF, int(seed) >> 32 & 0xFFFFFFFF, zlib.crc32(purpose.encode())]
    entropy += [int(k) for k in keys]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def numpy_rng(seed: int, purpose: str, *keys: int) -> np.random.Generator:
    """A numpy Generator on the derived stream."""
    return np.random.default_rng(derive_seed(seed, purpose, *keys))


def digest63(text: str) -> int:
    """A stable 63-bit hash of `text` (fits an int64 tensor), for comparing layouts and configs."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1
