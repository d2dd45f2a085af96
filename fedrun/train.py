"""Local training and evaluation loops.

In-memory tensors (`Split`) are batched by index permutation: no DataLoader object per client
per round. Any other torch Dataset goes through a DataLoader. Both shuffle with the client's own
generator, one fresh permutation per pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from fedrun.config import TrainConfig
from fedrun.data.types import Split
from fedrun.optim import SGD

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def loss_for(kind: str) -> LossFn:
    """Mean loss of a batch: cross-entropy for classification, MSE for regression."""
    if kind == "classification":
        return F.cross_entropy
    if kind == "regression":
        return lambda out, y: F.mse_loss(out, y.view_as(out).to(out.dtype))
    raise ValueError(f"unknown task kind {kind!r}")


def num_batches(n: int, batch_size: int, drop_last: str = "none") -> int:
    """Batches in one pass over n samples under a drop_last policy (fedrun.config.TrainConfig)."""
    full, rest = divmod(n, batch_size)
    keep = rest > 0 and not (drop_last == "all" or (drop_last == "single" and rest == 1))
    return full + keep


class TensorLoader:
    """A DataLoader look-alike over a Split: `len()` batches per pass, each pass a fresh
    permutation from `generator` (or in order without one)."""

    def __init__(
        self,
        data: Split,
        batch_size: int,
        generator: torch.Generator | None,
        drop_last: str = "none",
    ) -> None:
        self.dataset, self.batch_size, self.generator = data, batch_size, generator
        self.drop_last = drop_last

    def __len__(self) -> int:
        return num_batches(len(self.dataset), self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y, b = self.dataset.x, self.dataset.y, self.batch_size
        if self.generator is None:
            for i in range(len(self)):
                yield x[i * b : (i + 1) * b], y[i * b : (i + 1) * b]
            return
        perm = torch.randperm(len(self.dataset), generator=self.generator).to(
            x.device, non_blocking=True
        )
        for i in range(len(self)):
            idx = perm[i * b : (i + 1) * b]
            yield x[idx], y[idx]


class _Truncated:
    """A DataLoader's first `len()` batches per pass (drops a one-sample last batch)."""

    def __init__(self, loader: DataLoader, batches: int) -> None:
        self.loader, self.batches, self.dataset = loader, batches, loader.dataset

    def __len__(self) -> int:
        return self.batches

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.batches)

    def __getattr__(self, name: str):  # batch_size, sampler, ... as the DataLoader has them
        return getattr(self.loader, name)


def make_loader(
    data: Split | TorchDataset,
    batch_size: int,
    generator: torch.Generator | None,
    drop_last: str = "none",
) -> TensorLoader | DataLoader | _Truncated:
    """Shuffling loader when `generator` is given, sequential otherwise; `drop_last` as
    TrainConfig.drop_last says (training only: evaluation sees every sample)."""
    if isinstance(data, Split):
        return TensorLoader(data, batch_size, generator, drop_last)
    loader = DataLoader(
        data,
        batch_size=batch_size,
        shuffle=generator is not None,
        generator=generator,
        drop_last=drop_last == "all",
    )
    want = num_batches(len(data), batch_size, drop_last)
    return loader if want == len(loader) else _Truncated(loader, want)


def batches(loader, steps: int, epochs: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`steps` batches if steps > 0 (a new pass, reshuffled, whenever one ends), else `epochs`
    full passes."""
    if len(loader) == 0:
        return
    done = 0
    for epoch in range(10**12):
        if steps <= 0 and epoch == epochs:
            return
        for batch in loader:
            yield batch
            done += 1
            if done == steps:
                return


def local_train(
    model: nn.Module,
    optimizer: SGD,
    data: Split | TorchDataset,
    cfg: TrainConfig,
    loss_fn: LossFn,
    generator: torch.Generator,
    device: torch.device,
    hook: Callable[[], None] | None = None,
) -> tuple[float, int]:
    """Train `model` in place; returns (sum of batch-mean losses x batch sizes, samples seen).
    The optimizer's state (momentum) is cleared first: every client starts fresh. `hook` (a
    strategy's, e.g. FedProx's proximal gradient) runs between backward() and each step."""
    optimizer.reset()
    model.train()
    loss_sum = torch.zeros((), device=device)
    seen = 0
    loader = make_loader(data, cfg.batch_size, generator, cfg.drop_last)
    # in-memory data already on the device needs no per-batch .to() (a few % of a small step)
    move = not (isinstance(data, Split) and data.x.device == device == data.y.device)
    for xb, yb in batches(loader, cfg.local_steps, cfg.local_epochs):
        if move:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        if hook is not None:
            hook()
        optimizer.step()
        n = len(yb)
        loss_sum.add_(loss.detach(), alpha=n)  # stays on device: no sync per step
        seen += n
    return float(loss_sum), seen


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Split | TorchDataset,
    loss_fn: LossFn,
    classification: bool,
    batch_size: int,
    device: torch.device,
) -> tuple[float, float, int]:
    """(summed loss, number correct, examples) on `data`; correct is 0 unless classification."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    n = 0
    for xb, yb in make_loader(data, batch_size, None):
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        out = model(xb)
        loss_sum += loss_fn(out, yb).double() * len(yb)
        if classification:
            correct += (out.argmax(dim=1) == yb).sum()
        n += len(yb)
    return float(loss_sum), float(correct), n
