"""Checks that need the registries or user code: names, `--task`, model factories, strategy and
stage classes and their combinations. Called on every rank, before any collective, after the
per-field checks of fedrun.config: identical argv gives an identical verdict everywhere."""

from __future__ import annotations

from fedrun import algorithm
from fedrun.config import Config, all_fields, check_choice
from fedrun.errors import ConfigError
from fedrun.registry import DATASETS, MODELS, STAGES, STRATEGIES
from fedrun.task import task_object


def registry_choices() -> dict[str, list[str]]:
    """Config field -> registered names, for --help (fedrun.config.build_parser)."""
    return {
        "dataset": DATASETS.names(),
        "model": MODELS.names(),
        "strategy": STRATEGIES.names(),
        "stages": STAGES.names(),
    }


def _field(name: str) -> str:
    return all_fields()[name].label


def validate(cfg: Config) -> Config:
    """Every check, per-field and registry; raises ConfigError naming the first bad field."""
    cfg.validate()
    d, m = cfg.data, cfg.model
    strategy = algorithm.strategy_class(cfg)
    if d.task:
        task = task_object(d.task, instantiate=False)
        if strategy.local_objective and callable(getattr(task, "train", None)):
            raise ConfigError(
                _field("strategy"),
                f"{cfg.strategy.strategy} changes local training, but {d.task} brings its own "
                "train()",
                "drop the task's train() to use fedrun's local SGD",
            )
    else:
        ds = DATASETS.load(d.dataset)
        check_choice(d.partition, "partition", ds.partitions)
        if ":" in m.model:
            if not callable(MODELS.load(m.model)):
                raise ConfigError(
                    _field("model"),
                    f"{m.model} is not callable",
                    "name a function or class that builds the model",
                )
        else:
            MODELS.load(m.model)
    strategy.check(cfg)
    algorithm.stage_classes(cfg)
    if cfg.runtime.tensorboard:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError(
                _field("tensorboard"),
                "the tensorboard package is not installed",
                "pip install 'fedrun[tensorboard]' or drop --tensorboard",
            ) from None
    return cfg
