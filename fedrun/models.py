"""Built-in models (registered by name in fedrun.registry.MODELS) and user model factories.
Each builder takes (DatasetInfo, Config) and returns a fresh nn.Module."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fedrun.config import Config
from fedrun.data.types import DatasetInfo
from fedrun.errors import ConfigError
from fedrun.imports import import_object
from fedrun.registry import MODELS
from fedrun.seeding import derive_seed, kept_global_rngs, seed_globals


def logreg(info: DatasetInfo, cfg: Config) -> nn.Module:
    """Multinomial logistic regression (a linear layer on flattened inputs; softmax in the loss).
    `linear` is the same layer, named for regression tasks."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(info.input_shape), info.num_outputs))


def mlp(info: DatasetInfo, cfg: Config) -> nn.Module:
    """One hidden ReLU layer of width `hidden`."""
    h = cfg.model.hidden
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(info.input_shape), h),
        nn.ReLU(),
        nn.Linear(h, info.num_outputs),
    )


class Net(nn.Module):
    """The CNN of the Flower quickstart's cifar.py (the PyTorch CIFAR-10 tutorial): conv 3->6 k5,
    max-pool 2, conv 6->16 k5, fc 400->120->84->10. Identical layers for 3x32x32 inputs; other
    channel counts and sizes change only conv1's input and fc1's width."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, size: int = 32) -> None:
        super().__init__()
        side = ((size - 4) // 2 - 4) // 2
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def _image(info: DatasetInfo, name: str, min_side: int) -> tuple[int, int]:
    shape = info.input_shape
    if len(shape) != 3 or shape[1] != shape[2] or shape[1] < min_side:
        raise ConfigError(
            "model.model (--model)",
            f"{name} needs square images of at least {min_side}x{min_side}, got input {shape}",
            "pick logreg or mlp for this dataset",
        )
    return shape[0], shape[1]


def cnn(info: DatasetInfo, cfg: Config) -> nn.Module:
    channels, size = _image(info, "cnn", 16)
    return Net(channels, info.num_outputs, size)


def resnet18(info: DatasetInfo, cfg: Config) -> nn.Module:
    """torchvision's ResNet-18; with norm=group every BatchNorm becomes GroupNorm(2 groups)."""
    from torchvision.models import resnet18 as tv_resnet18

    channels, _ = _image(info, "resnet18", 8)
    norm = (lambda c: nn.GroupNorm(2, c)) if cfg.model.norm == "group" else None
    model = tv_resnet18(num_classes=info.num_outputs, norm_layer=norm)
    if channels != 3:
        model.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def from_factory(path: str, info: DatasetInfo) -> nn.Module:
    """`pkg.module:fn`, called with the keyword arguments it accepts among input_shape and
    num_outputs."""
    factory = import_object(path, "model.model (--model)")
    params = inspect.signature(factory).parameters
    offered = {"input_shape": info.input_shape, "num_outputs": info.num_outputs}
    model = factory(**{k: v for k, v in offered.items() if k in params})
    if not isinstance(model, nn.Module):
        raise ConfigError(
            "model.model (--model)",
            f"{path} returned {type(model).__name__}",
            "return a torch.nn.Module",
        )
    return model


def seeded(cfg: Config, factory: Callable[[], nn.Module]) -> nn.Module:
    """`factory()` under the (seed, "init") stream, without touching the global RNGs: every rank
    builds the same initial model (the server's copy is broadcast before round 1 anyway)."""
    seed = derive_seed(cfg.fed.seed, "init")
    with kept_global_rngs():
        torch.manual_seed(seed)  # every device type: a factory may build on a GPU
        seed_globals(seed)
        return factory()


def build_model(cfg: Config, info: DatasetInfo, device: torch.device | str = "cpu") -> nn.Module:
    """The named model (or `pkg.module:factory`), seeded as `seeded` says."""
    name = cfg.model.model
    model = seeded(
        cfg, lambda: from_factory(name, info) if ":" in name else MODELS.load(name)(info, cfg)
    )
    return model.to(device)
