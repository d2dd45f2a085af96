"""Local training and evaluation loops on in-memory tensors (no DataLoader per client per round)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from fedrun.config import TrainConfig
from fedrun.data import Split

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def loss_for(task: str) -> LossFn:
    """Mean loss of a batch: cross-entropy for classification, MSE for regression."""
    if task == "classification":
        return F.cross_entropy
    if task == "regression":
        return lambda out, y: F.mse_loss(out, y.view_as(out))
    raise ValueError(f"unknown task {task!r}")


def batches(
    n: int, batch_size: int, generator: torch.Generator, steps: int, epochs: int
) -> Iterator[torch.Tensor]:
    """Index batches: `steps` batches if steps > 0 (reshuffling at each pass), else `epochs`
    full passes, each a fresh permutation from `generator`. A pass's last batch may be short."""
    if n == 0:
        return
    done = 0
    while True:
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n, batch_size):
            yield perm[i : i + batch_size]
            done += 1
            if steps > 0 and done == steps:
                return
        if steps <= 0 and done == epochs * ((n + batch_size - 1) // batch_size):
            return


def local_train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Split,
    cfg: TrainConfig,
    loss_fn: LossFn,
    generator: torch.Generator,
) -> tuple[float, int]:
    """Train `model` in place on `data`; returns (sum of batch-mean losses x batch sizes, samples
    seen). The optimizer's state (momentum) is cleared first: every client starts fresh."""
    optimizer.state.clear()
    model.train()
    device = data.x.device
    loss_sum = torch.zeros((), device=device)
    seen = 0
    for idx in batches(len(data), cfg.batch_size, generator, cfg.local_steps, cfg.local_epochs):
        idx = idx.to(device, non_blocking=True)
        xb, yb = data.x[idx], data.y[idx]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(idx)  # stays on device: no sync per step
        seen += len(idx)
    return float(loss_sum), seen


@torch.no_grad()
def evaluate(model: nn.Module, data: Split, task: str, batch_size: int) -> tuple[float, float, int]:
    """(summed loss, number correct, examples) on `data`; correct is 0 for regression."""
    model.eval()
    loss_fn = loss_for(task)
    loss_sum = torch.zeros((), dtype=torch.float64, device=data.x.device)
    correct = torch.zeros((), dtype=torch.int64, device=data.x.device)
    for i in range(0, len(data), batch_size):
        xb, yb = data.x[i : i + batch_size], data.y[i : i + batch_size]
        out = model(xb)
        loss_sum += loss_fn(out, yb).double() * len(xb)
        if task == "classification":
            correct += (out.argmax(dim=1) == yb).sum()
    return float(loss_sum), float(correct), len(data)
