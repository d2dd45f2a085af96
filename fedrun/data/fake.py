"""Seeded random data of any shape, for benchmarks: each client draws its own samples from its
own stream, so a worker generates only its clients. Labels come from a fixed random linear
teacher, argmax(x W), so the task is learnable and accuracy means something."""

from __future__ import annotations

import functools
import math

import torch

from fedrun.config import Config
from fedrun.data.types import ClientData, DatasetInfo, Split
from fedrun.seeding import derive_seed


def parse_shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())


class Fake:
    partitions = ("iid", "natural")

    def info(self, cfg: Config) -> DatasetInfo:
        return DatasetInfo(
            parse_shape(cfg.data.fake_shape), cfg.data.fake_classes, "classification"
        )

    @staticmethod
    @functools.lru_cache(maxsize=4)
    def _teacher(seed: int, features: int, classes: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(derive_seed(seed, "fake-teacher"))
        return torch.randn(features, classes, generator=g)

    def _draw(self, cfg: Config, n: int, purpose: str, *keys: int) -> Split:
        shape = parse_shape(cfg.data.fake_shape)
        w = self._teacher(cfg.fed.seed, math.prod(shape), cfg.data.fake_classes)
        g = torch.Generator().manual_seed(derive_seed(cfg.fed.seed, purpose, *keys))
        x = torch.randn(n, *shape, generator=g)
        return Split(x, (x.reshape(n, -1) @ w).argmax(dim=1))

    def client_data(self, cfg: Config, client_ids: list[int]) -> dict[int, ClientData]:
        n = cfg.data.fake_samples
        out = {}
        for c in client_ids:
            s = self._draw(cfg, n + n // 10, "fake", c)
            out[c] = ClientData(Split(s.x[:n], s.y[:n]), Split(s.x[n:], s.y[n:]))
        return out

    def central_data(self, cfg: Config) -> Split:
        return self._draw(cfg, cfg.data.fake_test_samples, "fake-central")
