"""Derived seeds: every random stream in fedrun is a pure function of (seed, purpose, ...).

Streams never depend on which rank computes them, so a client's update is the same whichever
worker hosts it, and no rank needs a message to agree on sampling.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import zlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")


def derive_seed(seed: int, purpose: str, *keys: int) -> int:
    """A 63-bit seed for `purpose` ("sample", "client", ...) keyed by ints (round, client id)."""
    entropy = [int(seed) & 0xFFFFFFFF, int(seed) >> 32 & 0xFFFFFFFF, zlib.crc32(purpose.encode())]
    entropy += [int(k) for k in keys]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def numpy_rng(seed: int, purpose: str, *keys: int) -> np.random.Generator:
    """A numpy Generator on the derived stream."""
    return np.random.default_rng(derive_seed(seed, purpose, *keys))


def seed_globals(seed: int) -> None:
    """Seed torch's (CPU), numpy's and Python's global RNGs: what user code and dropout draw from.
    (`torch.manual_seed` would also queue a seed for every other device type: ~30% of a tiny
    client's time.)"""
    torch.default_generator.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


@contextlib.contextmanager
def kept_global_rngs() -> Iterator[None]:
    """The global RNGs' states are restored on leaving: seeding inside does not leak out."""
    saved = torch.default_generator.get_state(), np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        torch.default_generator.set_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])


def call_seeded(seed: int, fn: Callable[[], T]) -> T:
    """`fn()` under `seed_globals(seed)`, the global RNGs kept: user code that draws from them (a
    model factory, server_data) gives the same result on every run and whichever rank calls it."""
    with kept_global_rngs():
        seed_globals(seed)
        return fn()


def digest63(text: str) -> int:
    """A stable 63-bit hash of `text` (fits an int64 tensor), for comparing layouts and configs."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1
