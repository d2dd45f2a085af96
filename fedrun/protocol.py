"""The round protocol's wire format, shared by server and workers.

Per round r (see docs/architecture.md):
  1. broadcast  [TRAIN, r | w]               rank 0 -> all
  2. reduce-SUM [U | A, loss, seen, n, clients, failures, skipped]  all -> rank 0 (+ zeros)
  3. on evaluation rounds: broadcast [EVALUATE, r | w_new], reduce-SUM of the eval sums.
After the last round: broadcast [STOP | w]. A failure on the server becomes [ABORT | ...],
sent where workers wait for a broadcast, so no rank is ever left inside a collective.
"""

from __future__ import annotations

from enum import IntEnum

HEADER = 2  # broadcast header: (command, round)


class Command(IntEnum):
    TRAIN = 1
    EVALUATE = 2
    STOP = 3
    ABORT = 4


class TrainSlot(IntEnum):
    """Scalars after the update sum U in the train reduce buffer (same dtype as the vector)."""

    WEIGHT = 0  # A = sum of client weights a_k
    LOSS_SUM = 1  # sum over local batches of (batch-mean loss x batch size)
    SEEN = 2  # samples processed in local training
    EXAMPLES = 3  # sum of n_k (training examples of the sampled clients)
    CLIENTS = 4  # sampled clients handled
    FAILURES = 5  # workers that raised this round
    SKIPPED = 6  # clients whose update was dropped as bad (--on-bad-update skip)


class EvalSlot(IntEnum):
    """The federated-evaluation reduce buffer (float64)."""

    LOSS_SUM = 0
    CORRECT = 1
    EXAMPLES = 2
    CLIENTS = 3
    FAILURES = 4


def is_eval_round(round_: int, rounds: int, eval_every: int) -> bool:
    return round_ == rounds or (eval_every > 0 and round_ % eval_every == 0)
