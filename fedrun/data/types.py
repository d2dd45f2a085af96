"""The data types every rank handles: splits, a client's data, what a model needs to know, and
the interface of a dataset family (registered by name in fedrun.registry.DATASETS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch.utils.data import Dataset as TorchDataset

from fedrun.config import Config


@dataclass
class Split:
    """Features and targets of one split, as tensors on the target device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class ClientData:
    """One virtual client's local data: in-memory tensors (the fast path, batched by index
    permutation) or any torch Dataset (batched by a DataLoader)."""

    train: Split | TorchDataset
    test: Split | TorchDataset


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset."""

    input_shape: tuple[int, ...]
    num_outputs: int  # classes for classification, targets for regression
    task: str  # "classification" or "regression"


class Dataset(Protocol):
    """A dataset family, registered in DATASETS by name."""

    partitions: tuple[str, ...]

    def info(self, cfg: Config) -> DatasetInfo: ...

    def client_data(self, cfg: Config, client_ids: list[int]) -> dict[int, ClientData]:
        """The local data of the given clients only."""
        ...

    def central_data(self, cfg: Config) -> Split | TorchDataset | None:
        """The server's held-out evaluation set (never any client's training data), or None."""
        ...
