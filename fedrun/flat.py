"""The model state as one flat vector, its ranges told apart.

Every floating entry of `state_dict` travels in one contiguous tensor, ordered by kind:

    [ trainable parameters | frozen parameters (requires_grad=False) | floating buffers ]

so each kind is one slice (`FlatSpec.params`, `.frozen`, `.buffers`): server optimizers, proximal
terms, norm bounds and clipping act on `params`; floating buffers (BatchNorm running statistics)
are averaged plainly; frozen parameters keep their value. Within a kind, `state_dict` order.

Integer buffers (BatchNorm's int64 `num_batches_tracked`) are not in the vector: a float cast is
exact only up to 2**24 and averaging a counter means nothing. They are counters of local
training: every client starts from the initial model's values (so a client's result does not
depend on which worker hosts it or what that worker trained before), and what a client adds to
them is summed exactly over the round's clients (in the float64 statistics, exact to 2**53) and
added to the server's copy, so `final_model.pt` counts every batch trained in the federation.
(BatchNorm with momentum=None, the one layer that reads the counter, thus keeps a client's
cumulative average over that client's own batches of the round.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fedrun.seeding import digest63

KINDS = ("param", "frozen", "buffer")


@dataclass(frozen=True)
class Entry:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    offset: int
    numel: int
    kind: str = "param"  # one of KINDS


def _kind(t: torch.Tensor) -> str:
    if isinstance(t, nn.Parameter):
        return "param" if t.requires_grad else "frozen"
    return "buffer"


@dataclass(frozen=True)
class FlatSpec:
    """Layout of a model's floating state inside the flat vector, and of its integer buffers."""

    entries: tuple[Entry, ...]
    skipped: tuple[str, ...]  # integer (non-floating) state entries, kept out of the vector
    dtype: torch.dtype  # the vector's dtype: the promotion of all floating entries and float32
    ints: tuple[Entry, ...] = ()  # the integer buffers, offsets into `int_numel` counters

    @classmethod
    def of(cls, model: nn.Module) -> FlatSpec:
        floating: dict[str, list[tuple[str, torch.Tensor]]] = {k: [] for k in KINDS}
        skipped, ints, int_offset = [], [], 0
        dtype: torch.dtype | None = None
        for name, t in model.state_dict(keep_vars=True).items():
            if not t.is_floating_point():
                skipped.append(name)
                if not t.is_complex() and t.dtype != torch.bool:
                    ints.append(Entry(name, tuple(t.shape), t.dtype, int_offset, t.numel()))
                    int_offset += t.numel()
                continue
            floating[_kind(t)].append((name, t))
            dtype = t.dtype if dtype is None else torch.promote_types(dtype, t.dtype)
        entries, offset = [], 0
        for kind in KINDS:
            for name, t in floating[kind]:
                entries.append(Entry(name, tuple(t.shape), t.dtype, offset, t.numel(), kind))
                offset += t.numel()
        if not entries:
            raise ValueError("the model has no floating-point parameters or buffers")
        # at least float32: the same buffer carries the round number (bf16 turns 257 into 256)
        return cls(
            tuple(entries), tuple(skipped), torch.promote_types(dtype, torch.float32), tuple(ints)
        )

    @property
    def numel(self) -> int:
        last = self.entries[-1]
        return last.offset + last.numel

    def _range(self, kind: str) -> slice:
        mine = [e for e in self.entries if e.kind == kind]
        if not mine:
            start = sum(e.numel for e in self.entries if KINDS.index(e.kind) < KINDS.index(kind))
            return slice(start, start)
        return slice(mine[0].offset, mine[-1].offset + mine[-1].numel)

    @property
    def params(self) -> slice:
        """The trainable parameters' range."""
        return self._range("param")

    @property
    def frozen(self) -> slice:
        return self._range("frozen")

    @property
    def buffers(self) -> slice:
        """The floating buffers' range (BatchNorm running statistics)."""
        return self._range("buffer")

    @property
    def int_numel(self) -> int:
        return sum(e.numel for e in self.ints)

    def digest(self) -> int:
        """A 63-bit hash of names, shapes, dtypes and kinds: ranks compare it before round 1."""
        text = ";".join(f"{e.name}:{e.shape}:{e.dtype}:{e.kind}" for e in self.entries)
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

    @torch.no_grad()
    def flatten_ints(self, model: nn.Module) -> torch.Tensor:
        """The integer buffers as one int64 vector of `int_numel` elements."""
        sd = model.state_dict(keep_vars=True)
        return torch.cat([sd[e.name].detach().reshape(-1).long().cpu() for e in self.ints])

    @torch.no_grad()
    def load_ints(self, model: nn.Module, values: torch.Tensor) -> None:
        sd = model.state_dict(keep_vars=True)
        for e in self.ints:
            t = sd[e.name]
            t.copy_(values[e.offset : e.offset + e.numel].view(e.shape).to(t.dtype))

    def state_dict(
        self, model: nn.Module, flat: torch.Tensor, ints: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The model's state_dict with the flat vector's values (and the integer buffers'
        `ints`, if given), detached on the CPU."""
        self.load(model, flat)
        if ints is not None and self.ints:
            self.load_ints(model, ints)
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
