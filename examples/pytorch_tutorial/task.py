"""The PyTorch federated-learning tutorial: SimpleModel = Linear(10, 1), MSE, local SGD
(lr 0.01), five clients, the server averages -- plus its three exercises.

    # the tutorial: 5 clients, same amount of IID data, plain mean of the models
    torchrun --nproc_per_node=3 -m fedrun.main --config examples/pytorch_tutorial/job.toml \\
        --task examples.pytorch_tutorial.task:basic --weighting uniform
    # exercise 1: clients with different datasets (sizes 20..400, each its own input range)
    ... --task examples.pytorch_tutorial.task:different_data
    # exercise 2: weighted averaging by client data size (fedrun's default --weighting examples)
    ... --task examples.pytorch_tutorial.task:different_data --weighting examples
    # exercise 3: non-IID data (each client's inputs shifted, and its own noise and slope)
    ... --task examples.pytorch_tutorial.task:non_iid

All clients share one true linear function y = x . w* + 0.5 (+ noise), so the federation has
something to find; the server scores the global model on fresh IID samples of it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

W_TRUE = torch.linspace(-1, 1, 10)


class SimpleModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def _draw(n: int, seed: int, shift: float = 0.0, scale: float = 1.0, noise: float = 0.1, tilt=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=g) * scale + shift
    y = x @ (W_TRUE + tilt) + 0.5 + noise * torch.randn(n, generator=g)
    return x, y.unsqueeze(1)


class Scenario:
    loss = "mse"

    def __init__(
        self, sizes=lambda c: 100, shift=lambda c: 0.0, noise=lambda c: 0.1, tilt=lambda c: 0.0
    ):
        self.sizes, self.shift, self.noise, self.tilt = sizes, shift, noise, tilt

    def model(self) -> nn.Module:
        return SimpleModel()

    def client_data(self, client_id: int, num_clients: int):
        c = client_id
        n = self.sizes(c)
        x, y = _draw(n + n // 5, 1000 + c, self.shift(c), 1.0, self.noise(c), self.tilt(c))
        return TensorDataset(x[:n], y[:n]), TensorDataset(x[n:], y[n:])

    def server_data(self):
        return TensorDataset(*_draw(1000, 7))


basic = Scenario()
different_data = Scenario(sizes=lambda c: [20, 50, 100, 200, 400][c % 5], shift=lambda c: 0.5 * c)
non_iid = Scenario(
    sizes=lambda c: [20, 50, 100, 200, 400][c % 5],
    shift=lambda c: 0.75 * (c - 2),
    noise=lambda c: 0.05 * (1 + c),
    tilt=lambda c: 0.2 * (c - 2) * torch.ones(10) / 10,
)
