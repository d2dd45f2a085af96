"""Every registered entry imports and is what its registry promises; names fail in one line."""

import inspect

import pytest
from torch import nn

from fedrun.data.types import DatasetInfo
from fedrun.errors import ConfigError
from fedrun.registry import ALL, DATASETS, EXCHANGES, MODELS, STAGES, STRATEGIES
from fedrun.stages.base import Stage
from fedrun.strategies.base import Strategy


@pytest.mark.parametrize("registry", ALL, ids=lambda r: r.label)
def test_every_entry_imports(registry):
    assert registry.names()
    for name in registry.names():
        obj = registry.load(name)
        if registry is DATASETS:
            assert obj.partitions and callable(obj.client_data) and callable(obj.central_data)
        elif registry is MODELS:
            assert list(inspect.signature(obj).parameters) == ["info", "cfg"]
        elif registry is STRATEGIES:
            assert issubclass(obj, Strategy)
        elif registry is STAGES:
            assert issubclass(obj, Stage)
        elif registry is EXCHANGES:
            # what fedrun.exchange.packed.Exchange calls on an uplink group
            assert {"use_buffer", "reset", "flush", "send", "receive", "nbytes"} <= set(dir(obj))


@pytest.mark.parametrize(
    ("registry", "typo", "near"),
    [
        (DATASETS, "fashion_mnist", "fashion-mnist"),
        (MODELS, "resnet", "resnet18"),
        (STRATEGIES, "fedavgg", "fedavg"),
        (STAGES, "gaurd", "guard"),
    ],
)
def test_a_misspelt_name_suggests_the_near_one(registry, typo, near):
    with pytest.raises(ConfigError) as e:
        registry.load(typo)
    msg = str(e.value)
    assert msg.startswith(registry.label) and f"did you mean {near}?" in msg and "\n" not in msg


def test_user_code_by_path():
    assert STRATEGIES.load("fedrun.strategies.fedavg:FedAvg") is STRATEGIES.load("fedavg")
    factory = MODELS.load("tests.userpkg.factories:two_layer")
    assert isinstance(factory((4,), 2), nn.Module)
    with pytest.raises(ConfigError, match="has no attribute 'Nope'"):
        STAGES.load("fedrun.stages.guard:Nope")


def test_registry_tables_are_strings_until_used():
    """Importing the registry imports no entry: the tables are 'module:attr' strings."""
    for registry in ALL:
        assert all(isinstance(v, str) and ":" in v for v in registry.entries.values())
    info = DatasetInfo((3, 32, 32), 10, "classification")
    assert isinstance(MODELS.load("cnn")(info, None), nn.Module)


def test_the_guard_is_not_named_twice():
    from fedrun import checks
    from fedrun.config import parse_args

    with pytest.raises(ConfigError, match=r"strategy.stages \(--stages\): the guard always runs"):
        checks.validate(parse_args(["--stages", "guard"]))
