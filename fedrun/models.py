"""Models by name. Each builder takes (DatasetInfo, Config) and returns a fresh nn.Module."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from fedrun.config import Config
from fedrun.data import DatasetInfo
from fedrun.seeding import derive_seed


def logreg(info: DatasetInfo, cfg: Config) -> nn.Module:
    """Multinomial logistic regression (a linear layer on flattened inputs; softmax in the loss)."""
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


MODELS: dict[str, Callable[[DatasetInfo, Config], nn.Module]] = {"logreg": logreg, "mlp": mlp}


def build_model(cfg: Config, info: DatasetInfo, device: torch.device | str = "cpu") -> nn.Module:
    """The named model, initialised from (seed, "init") without touching the global RNG.
    Every rank builds the same one; the server's copy is broadcast anyway before round 1."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.fed.seed, "init"))
        model = MODELS[cfg.model.model](info, cfg)
    return model.to(device)
