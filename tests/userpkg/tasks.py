"""User tasks for the tests, written the way the README tells users to."""

import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from .memprobe import refaults

SIZES = [30, 20, 0, 25, 40]  # client 2 holds no training data


def _data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, (x @ torch.tensor([[1.0, -1, 0], [0, 1, -1], [-1, 0, 1]])).argmax(1)


class Tensors:
    """Classification on TensorDatasets (the fast path); client 2 is empty."""

    def model(self):
        return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))

    def client_data(self, client_id, num_clients):
        x, y = _data(SIZES[client_id % 5] + 5, client_id)
        n = SIZES[client_id % 5]
        return TensorDataset(x[:n], y[:n]), TensorDataset(x[n:], y[n:])

    def server_data(self):
        return TensorDataset(*_data(50, 99))


tensors = Tensors()


class Empty(Tensors):
    def client_data(self, client_id, num_clients):
        return TensorDataset(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)), None


class Exploding(Tensors):
    def train(self, model, loader, epochs, device):
        raise RuntimeError("boom in the user's train")


class Pairs(Dataset):
    """Not a TensorDataset: goes through a DataLoader."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class SeedStyle:
    """Generic Datasets and the Flower tutorial's train/test signatures."""

    calls = 0

    def model(self):
        return nn.Linear(3, 3)

    def client_data(self, client_id, num_clients):
        x, y = _data(40, client_id)
        return Pairs(x[:30], y[:30]), Pairs(x[30:], y[30:])

    def train(self, model, loader, epochs, device):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(epochs):
            for xb, yb in loader:
                opt.zero_grad()
                nn.functional.cross_entropy(model(xb.to(device)), yb.to(device)).backward()
                opt.step()

    def evaluate(self, model, loader, device):
        correct = total = 0
        with torch.no_grad():
            for xb, yb in loader:
                correct += (model(xb).argmax(1) == yb).sum().item()
                total += len(yb)
        return 0.25, correct / total


class NoData:
    def model(self):
        return nn.Linear(3, 3)


class BadLoss(Tensors):
    loss = "hinge"


class ForkedFrom(Tensors):
    """Each rank writes how many threads the process it was forked from runs, to
    $FEDRUN_TEST_DIR/<rank>: a child forked from a multi-threaded process can inherit a lock that
    another thread held, and hang."""

    def model(self):
        parent_threads = len(os.listdir(f"/proc/{os.getppid()}/task"))
        Path(os.environ["FEDRUN_TEST_DIR"], os.environ["RANK"]).write_text(str(parent_threads))
        return super().model()


class GlobalRandom(Tensors):
    """Data drawn from the global RNGs of torch, numpy and Python, unseeded, as the README's
    example task draws its central set."""

    @staticmethod
    def _draw(n: int):
        x = torch.randn(n, 3) + torch.from_numpy(np.random.rand(n, 3)).float() + random.random()
        return TensorDataset(x, x.argmax(1))

    def client_data(self, client_id, num_clients):
        return self._draw(10), None

    def server_data(self):
        return self._draw(20)


class Refaults(Tensors):
    """Each rank writes the page faults of allocating, freeing and reallocating 90 MiB
    (memprobe.refaults) to $FEDRUN_TEST_DIR/<rank>: how its allocator treats freed memory."""

    def model(self):
        first, second = refaults()
        Path(os.environ["FEDRUN_TEST_DIR"], os.environ["RANK"]).write_text(f"{first} {second}")
        return super().model()


class NaNClient(Tensors):
    """Client 1's inputs hold a NaN: its update is NaN."""

    def client_data(self, client_id, num_clients):
        train, test = super().client_data(client_id, num_clients)
        if client_id == 1:
            x, y = train.tensors
            x = x.clone()
            x[0, 0] = float("nan")
            train = TensorDataset(x, y)
        return train, test


class WrongOutput(Tensors):
    """A regression loss on a 3-output model with class labels: shapes that do not fit."""

    loss = "mse"


class Sleepy(Tensors):
    """Client 3 never finishes training (a stuck rank)."""

    def train(self, model, loader, epochs, device):
        import time

        if len(loader.dataset) == SIZES[3]:
            time.sleep(3600)


class BadCentral(Tensors):
    """The server's held-out set has 7 features for a 3-feature model."""

    def server_data(self):
        return TensorDataset(torch.randn(20, 7), torch.zeros(20, dtype=torch.long))


class Counted(Tensors):
    """Counts its instances: fedrun builds a task object once per rank."""

    made = 0

    def __init__(self):
        type(self).made += 1


class Reconfigures(Tensors):
    def configure(self, cfg):
        cfg.train.lr = 0.5  # after every rank agreed on the config: refused


class UnequalTests(Tensors):
    """Client c's test split holds 5 (c + 1) examples labelled c, and evaluate() reports the
    mean label as its loss: the federated loss is then sum_c 5(c+1) c / sum_c 5(c+1) when
    weighted by test examples (2.0 for four clients), 1.5 if it were not."""

    def client_data(self, client_id, num_clients):
        x, y = _data(8, client_id)
        n = 5 * (client_id + 1)
        return TensorDataset(x, y), TensorDataset(torch.zeros(n, 3), torch.full((n,), client_id))

    def evaluate(self, model, loader, device):
        labels = torch.cat([y for _, y in loader]).double()
        return float(labels.mean()), 1.0  # (mean loss per example, accuracy)
