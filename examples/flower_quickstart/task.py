"""The Flower quickstart (one server, two clients, three rounds) as a fedrun task.

    torchrun --nproc_per_node=3 -m fedrun.main --config examples/flower_quickstart/job.toml

Where Flower's client.py wraps cifar.py in a NumPyClient, fedrun needs only this object: the
model, each client's data, the server's test set, and the tutorial's own train/test functions.
Each of the two clients holds half of the CIFAR-10 training set (the tutorial gave both the
whole set; halves make the federation real) and 10% of its half as a local test split.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from examples.flower_quickstart import cifar
from fedrun.config import Config


class FlowerQuickstart:
    loss = "cross_entropy"
    train = staticmethod(cifar.train)
    evaluate = staticmethod(cifar.test)

    def configure(self, cfg: Config) -> None:
        self.cfg = cfg  # data_root and download come from fedrun's flags

    def model(self) -> torch.nn.Module:
        return cifar.Net()

    def client_data(self, client_id: int, num_clients: int):
        x, y = cifar.load_data(self.cfg, train=True).tensors
        share = torch.arange(client_id, len(y), num_clients)  # interleaved: balanced halves
        test, train = share[: len(share) // 10], share[len(share) // 10 :]
        return TensorDataset(x[train], y[train]), TensorDataset(x[test], y[test])

    def server_data(self):
        return cifar.load_data(self.cfg, train=False)


task = FlowerQuickstart()
