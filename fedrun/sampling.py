"""Client sampling and placement: pure functions every rank evaluates alike, no messages."""

from __future__ import annotations

import torch

from fedrun.seeding import derive_seed


def sample_clients(
    num_clients: int, k: int, seed: int, round_: int, purpose: str = "sample"
) -> list[int]:
    """`k` distinct client ids drawn uniformly without replacement from (seed, purpose, round)."""
    if not 0 <= k <= num_clients:
        raise ValueError(f"cannot sample {k} of {num_clients} clients")
    if k == num_clients:
        return list(range(num_clients))
    g = torch.Generator().manual_seed(derive_seed(seed, purpose, round_))
    return sorted(torch.randperm(num_clients, generator=g)[:k].tolist())


def host_of(client_id: int, world_size: int) -> int:
    """The worker rank (1..world_size-1) hosting a client: round-robin, so any uniform sample
    spreads evenly over the workers."""
    return 1 + client_id % (world_size - 1)


def clients_of(rank: int, num_clients: int, world_size: int) -> list[int]:
    """All client ids hosted by worker `rank`; empty for the server (rank 0)."""
    if rank == 0:
        return []
    return list(range(rank - 1, num_clients, world_size - 1))
