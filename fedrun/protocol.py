"""The round protocol's commands and the types that cross its seams, without any transport.

Per round r (see docs/architecture.md):
  1. broadcast the downlink groups, the first one [TRAIN, r | w | ...]     rank 0 -> all
  2. one reduce per uplink group: the float64 statistics, then the vector sums   all -> rank 0
  3. on evaluation rounds: broadcast [EVALUATE, r | w_new], reduce-SUM of the eval sums.
After the last round: broadcast [STOP | w]. A failure on the server becomes [ABORT | ...],
sent where workers wait for a broadcast, so no rank is ever left inside a collective.

Strategies and stages see only the types here (RoundContext, ClientRound, Received) and the
wire plan (fedrun.wire); the exchange (fedrun.exchange) turns those into collectives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import torch

from fedrun.seeding import derive_seed

HEADER = 2  # (command, round) ahead of w in the first downlink group, in the vector's dtype


class Command(IntEnum):
    TRAIN = 1
    EVALUATE = 2
    STOP = 3
    ABORT = 4


BASE_STATS = ("weight", "loss_sum", "seen", "examples", "clients", "failures")
"""The round statistics every plan carries, summed over workers in float64 (exact for counts
up to 2**53): A = sum of client weights a_k; the sum over local batches of batch-mean loss x
batch size; samples processed in local training; the sampled clients' training examples
(sum of n_k); sampled clients handled; workers that raised this round. Stages and strategies
append their own names (the guard's "skipped")."""


class EvalSlot(IntEnum):
    """The federated-evaluation reduce buffer (float64)."""

    LOSS_SUM = 0
    CORRECT = 1
    EXAMPLES = 2
    CLIENTS = 3
    FAILURES = 4


def is_eval_round(round_: int, rounds: int, eval_every: int) -> bool:
    return round_ == rounds or (eval_every > 0 and round_ % eval_every == 0)


@dataclass(frozen=True)
class RoundContext:
    """What every rank knows about a round without a message: computed from (seed, round)."""

    round: int
    seed: int
    sampled: tuple[int, ...]  # every client sampled this round, on every rank

    def seed_for(self, purpose: str, client: int = -1) -> int:
        """The stream (seed, purpose, round, client): randomness of a strategy or stage that
        repeats on resume and does not depend on which worker hosts the client."""
        return derive_seed(self.seed, purpose, self.round, client)


@dataclass
class ClientRound:
    """One sampled client on its worker, as the client halves of the strategy and stages see it."""

    ctx: RoundContext
    client: int
    num_examples: int  # n_k, training examples
    weight: float  # a_k, the strategy's client weight
    global_vec: torch.Tensor  # w as broadcast (read-only)
    downlink: dict[str, torch.Tensor]  # every downlink segment by name ("w" too)
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    """This client's entries in the worker's per-client state store (kept across rounds and
    checkpoints) when the strategy or a stage declares `needs_client_state`; else a fresh {}."""


@dataclass
class Received:
    """What rank 0 holds after a round's uplink collectives."""

    sums: dict[str, torch.Tensor]  # every uplink sum segment by name ("update": U)
    stats: dict[str, float]  # the float64 statistics by name (BASE_STATS and additions)

    @property
    def update(self) -> torch.Tensor:
        """U = sum_k a_k (w_k - w)."""
        return self.sums["update"]

    @property
    def weight(self) -> float:
        """A = sum_k a_k."""
        return self.stats["weight"]
