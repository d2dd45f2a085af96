"""PySyft's "bob and alice" toy as a fedrun task.

    torchrun --nproc_per_node=3 -m fedrun.main --task examples.pysyft_toy:task \\
        --num-clients 2 --clients-per-round 2 --rounds 10 --lr 0.2 --batch-size 2 --local-steps 1

Four points with two features, a Linear(2, 1) model, squared error, SGD. Bob holds the first
two points and Alice the last two; neither's data leaves its worker. The tutorial sent the model
to bob, then alice, in turn; the tutorial's closing advice -- average across clients before
anything leaves them -- is what fedrun does: each round both train from the same global model
and the server averages. The tutorial's summed loss over 2 points at lr 0.1 is the mean loss at
lr 0.2, hence --lr 0.2.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

DATA = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1.0]])
TARGET = torch.tensor([[0], [0], [1], [1.0]])
OWNERS = {0: "bob", 1: "alice"}


class Toy:
    loss = "mse"

    def model(self) -> torch.nn.Module:
        return torch.nn.Linear(2, 1)

    def client_data(self, client_id: int, num_clients: int):
        if num_clients != 2:
            raise ValueError("the toy has exactly two clients, bob and alice: --num-clients 2")
        rows = slice(0, 2) if client_id == 0 else slice(2, 4)
        return TensorDataset(DATA[rows], TARGET[rows]), None

    def server_data(self):
        return TensorDataset(DATA, TARGET)  # the toy's whole world, to score the global model


task = Toy()
