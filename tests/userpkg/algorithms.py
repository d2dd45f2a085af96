"""User code for the strategy and stage seams, named by path: --strategy / --stages."""

from __future__ import annotations

import math

import torch
from torch import nn

from fedrun.protocol import ClientRound, Received, RoundContext
from fedrun.stages.base import Stage
from fedrun.strategies.base import Strategy
from fedrun.wire import WirePlan


class ClientMomentum(Strategy):
    """Each client sends m_k <- 0.5 m_k + delta_k, m_k kept in the per-client state store: a
    result that depends on every client's history, so resume and re-hosting must restore it."""

    needs_client_state = True

    def plan(self) -> WirePlan:
        return super().plan().with_stats("momentum_clients")

    def contribute(self, client: ClientRound, delta, sums, stats) -> None:
        m = client.state.get("m")
        m = delta.clone() if m is None else m.mul_(0.5).add_(delta)
        client.state["m"] = m
        sums["update"].add_(m, alpha=client.weight)
        stats["momentum_clients"] += 1

    def aggregate(self, ctx: RoundContext, global_vec, received: Received) -> torch.Tensor:
        assert received.stats["momentum_clients"] == len(ctx.sampled)
        return global_vec.add(received.update, alpha=1.0 / received.weight)


class Halve(Stage):
    """Halves every client's update: FedAvg with it is FedAvg with --server-lr 0.5."""

    def client(self, client, delta, stats):
        return delta.mul_(0.5)


class NotAStrategy:
    pass


def bn_mlp(input_shape, num_outputs):
    """Linear -> BatchNorm1d -> ReLU -> Linear: running statistics and an integer counter."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Linear(16, num_outputs),
    )


def dropout_mlp(input_shape, num_outputs):
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), 32),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(32, num_outputs),
    )


class MiscountsClients(Stage):
    """Reports one client too many: what ranks that disagree on the sample would send."""

    def client(self, client, delta, stats):
        stats["clients"] += 1
        return delta
