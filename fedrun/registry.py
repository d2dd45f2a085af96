"""Every named, pluggable part of fedrun: name -> "module:attr", imported only when used.

Each registry also takes user code as `pkg.module:Obj` (imported like `python -m` would), so a
user's own dataset, model, strategy or stage is named the way a built-in one is. A misspelt
name is refused in one line that names the field, the choices and the nearest one. This module
imports no registered entry at import time: the tables are strings.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from fedrun.errors import ConfigError
from fedrun.imports import import_object


class Registry:
    """`name -> "module:attr"`, loaded lazily; `pkg.module:Obj` loads user code."""

    def __init__(self, label: str, entries: dict[str, str], instantiate: bool = False) -> None:
        self.label = label  # the config field in errors: "strategy.strategy (--strategy)"
        self.entries = entries
        self.instantiate = instantiate  # datasets: the registered class, built without arguments

    def names(self) -> list[str]:
        return sorted(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def refuse(self, name: str) -> ConfigError:
        near = difflib.get_close_matches(name, self.names(), n=1, cutoff=0.6)
        fix = f"choose one of {', '.join(self.names())} or give pkg.module:Obj"
        if near:
            fix += f" (did you mean {near[0]}?)"
        return ConfigError(self.label, f"unknown value {name!r}", fix)

    def not_a(self, name: str, base: str) -> ConfigError:
        return ConfigError(
            self.label, f"{name} is not a subclass of {base}", f"derive it from {base}"
        )

    def load(self, name: str) -> Any:
        """The registered object, or the user's `pkg.module:Obj`."""
        if ":" in name:
            obj = import_object(name, self.label)
        elif name in self.entries:
            module, _, attr = self.entries[name].partition(":")
            obj = getattr(importlib.import_module(module), attr)
        else:
            raise self.refuse(name)
        return obj() if self.instantiate and isinstance(obj, type) else obj


DATASETS = Registry(
    "data.dataset (--dataset)",
    {
        "synthetic": "fedrun.data.synthetic:Synthetic",
        "digits": "fedrun.data.pooled:Digits",
        "mnist": "fedrun.data.pooled:MNIST",
        "fashion-mnist": "fedrun.data.pooled:FashionMNIST",
        "cifar10": "fedrun.data.pooled:CIFAR10",
        "fake": "fedrun.data.fake:Fake",
    },
    instantiate=True,
)
"""Dataset families (fedrun.data.types.Dataset): `pkg.module:Class` for your own."""

MODELS = Registry(
    "model.model (--model)",
    {
        "logreg": "fedrun.models:logreg",
        "linear": "fedrun.models:logreg",
        "mlp": "fedrun.models:mlp",
        "cnn": "fedrun.models:cnn",
        "resnet18": "fedrun.models:resnet18",
    },
)
"""Built-in model builders `(DatasetInfo, Config) -> nn.Module`; a user's `pkg.module:fn` is a
factory called with the keyword arguments it accepts (fedrun.models.from_factory)."""

STRATEGIES = Registry(
    "strategy.strategy (--strategy)",
    {
        "fedavg": "fedrun.strategies.fedavg:FedAvg",
        "fedavgm": "fedrun.strategies.fedavgm:FedAvgM",
        "fedprox": "fedrun.strategies.fedprox:FedProx",
        "fedadagrad": "fedrun.strategies.fedadagrad:FedAdagrad",
        "fedadam": "fedrun.strategies.fedadam:FedAdam",
        "fedyogi": "fedrun.strategies.fedyogi:FedYogi",
    },
)
"""Strategy subclasses (fedrun.strategies.base): both halves of one algorithm."""

STAGES = Registry(
    "strategy.stages (--stages)",
    {"guard": "fedrun.stages.guard:UpdateGuard"},
)
"""Per-client update stages (fedrun.stages.base.Stage); the guard always runs first."""

EXCHANGES = Registry(
    "the strategy's wire plan (uplink segment op)",
    {"sum": "fedrun.exchange.sum:SumGroup"},
)
"""How one packed uplink buffer travels, by the operation its segments declare."""

ALL = (DATASETS, MODELS, STRATEGIES, STAGES, EXCHANGES)
