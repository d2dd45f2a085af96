"""One job's algorithm: the strategy, its stage chain and the wire plan they declare together.

Built alike on every rank from the config and the model layout, so every rank packs the same
buffers and enters the same collectives. Imports no transport.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedrun.config import Config
from fedrun.errors import ConfigError
from fedrun.flat import FlatSpec
from fedrun.registry import STAGES, STRATEGIES
from fedrun.stages.base import Stage
from fedrun.stages.guard import UpdateGuard
from fedrun.strategies.base import Strategy
from fedrun.wire import WirePlan

INT_STAT = "int."  # + index: a client's increments of the model's integer buffers (fedrun.flat)


def stage_names(cfg: Config) -> list[str]:
    return [n.strip() for n in cfg.strategy.stages.split(",") if n.strip()]


def strategy_class(cfg: Config) -> type[Strategy]:
    cls = STRATEGIES.load(cfg.strategy.strategy)
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise STRATEGIES.not_a(cfg.strategy.strategy, "fedrun.strategies.base.Strategy")
    return cls


def stage_classes(cfg: Config) -> list[type[Stage]]:
    out: list[type[Stage]] = [UpdateGuard]
    for name in stage_names(cfg):
        cls = STAGES.load(name)
        if cls is UpdateGuard:
            raise ConfigError(
                STAGES.label, "the guard always runs first", f"drop {name} from --stages"
            )
        if not (isinstance(cls, type) and issubclass(cls, Stage)):
            raise STAGES.not_a(name, "fedrun.stages.base.Stage")
        out.append(cls)
    return out


@dataclass
class Algorithm:
    strategy: Strategy
    stages: list[Stage]
    plan: WirePlan
    int_stats: tuple[str, ...]  # the statistics carrying integer-buffer increments

    @property
    def needs_client_state(self) -> bool:
        return self.strategy.needs_client_state or any(s.needs_client_state for s in self.stages)


def build(cfg: Config, layout: FlatSpec) -> Algorithm:
    strategy = strategy_class(cfg)(cfg.strategy, layout)
    stages = [cls(cfg, layout) for cls in stage_classes(cfg)]
    plan = strategy.plan()
    for stage in stages:
        plan = stage.plan(plan)
    int_stats = tuple(f"{INT_STAT}{i}" for i in range(layout.int_numel))
    plan = plan.with_stats(*int_stats)
    plan.check()
    return Algorithm(strategy, stages, plan, int_stats)
