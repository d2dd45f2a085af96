"""The model state as one flat vector.

All floating parameters and floating buffers (BatchNorm running statistics included) travel, in
`state_dict` order, as one contiguous tensor. Integer buffers (BatchNorm's int64
`num_batches_tracked`) never travel: a float32 cast is exact only up to 2**24 and averaging a
counter means nothing. They keep the values of the model they live in: on the server that is the
initial model, so `final_model.pt` holds the initial counters; on a worker, its one reused
model's counter, which counts the batches that worker trained. BatchNorm with momentum=None
(cumulative averages) is the only layer that reads the counter, and a federated run of it
should use momentum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fedrun.seeding import digest63


@dataclass(frozen=True)
class Entry:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    offset: int
    numel: int


@dataclass(frozen=True)
class FlatSpec:
    """Layout of a model's floating state inside the flat vector."""

    entries: tuple[Entry, ...]
    skipped: tuple[str, ...]  # non-floating state entries, kept out of the vector
    dtype: torch.dtype  # the vector's dtype: the promotion of all floating entries and float32

    @classmethod
    def of(cls, model: nn.Module) -> FlatSpec:
        entries, skipped, offset = [], [], 0
        dtype: torch.dtype | None = None
        for name, t in model.state_dict(keep_vars=True).items():
            if not t.is_floating_point():
                skipped.append(name)
                continue
            entries.append(Entry(name, tuple(t.shape), t.dtype, offset, t.numel()))
            offset += t.numel()
            dtype = t.dtype if dtype is None else torch.promote_types(dtype, t.dtype)
        if not entries:
            raise ValueError("the model has no floating-point parameters or buffers")
        # at least float32: the same buffers carry the round number and example counts, which
        # half precision rounds (bf16 turns round 257 into 256)
        return cls(tuple(entries), tuple(skipped), torch.promote_types(dtype, torch.float32))

    @property
    def numel(self) -> int:
        last = self.entries[-1]
        return last.offset + last.numel

    def digest(self) -> int:
        """A 63-bit hash of names, shapes and dtypes: ranks compare it before the first round."""
        text = ";".join(f"{e.name}:{e.shape}:{e.dtype}" for e in self.entries)
        text += "|" + ";".join(self.skipped)
        return digest63(text)

    def _tensors(self, model: nn.Module) -> list[torch.Tensor]:
        sd = model.state_dict(keep_vars=True)
        return [sd[e.name] for e in self.entries]

    def empty(self, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.zeros(self.numel, dtype=self.dtype, device=device)

    @torch.no_grad()
    def flatten(self, model: nn.Module, out: torch.Tensor | None = None) -> torch.Tensor:
        """Copy the model's floating state into `out` (allocated if None) and return it."""
        tensors = self._tensors(model)
        if out is None:
            out = self.empty(tensors[0].device)
        for e, t in zip(self.entries, tensors, strict=True):
            out[e.offset : e.offset + e.numel].copy_(t.reshape(-1))
        return out

    @torch.no_grad()
    def load(self, model: nn.Module, flat: torch.Tensor) -> None:
        """Copy the flat vector into the model's tensors in place (no reallocation)."""
        if flat.numel() != self.numel:
            raise ValueError(f"flat vector has {flat.numel()} elements, the model {self.numel}")
        for e, t in zip(self.entries, self._tensors(model), strict=True):
            t.copy_(flat[e.offset : e.offset + e.numel].view(e.shape))

    def state_dict(self, model: nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model's state_dict with the flat vector's values, detached on the CPU."""
        self.load(model, flat)
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
