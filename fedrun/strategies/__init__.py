"""Aggregation strategies by name; one per file, each with a sibling test."""

from __future__ import annotations

from fedrun.config import StrategyConfig
from fedrun.strategies.base import Strategy
from fedrun.strategies.fedavg import FedAvg

STRATEGIES: dict[str, type[Strategy]] = {"fedavg": FedAvg}


def build_strategy(cfg: StrategyConfig) -> Strategy:
    return STRATEGIES[cfg.strategy](cfg)
