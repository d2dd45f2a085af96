"""The per-client state store on a worker: tensors a strategy or stage keeps for each of its
hosted clients across rounds (SCAFFOLD's c_i, error-feedback residuals, personal models).

Kept only when the strategy or a stage declares `needs_client_state`. Memory: hosted clients x
state size per worker (a client's entry exists once it has trained). Saved with every checkpoint
as one file per worker, `checkpoints/round_NNNNNN.clients/rank<r>.pt`, written before that
worker enters round NNNNNN's reduce (so rank 0's checkpoint of that round, written after the
reduce, never exists without them); each file maps client id -> state, so on resume every
worker reads all files and keeps its own clients': the store is re-hostable when the world size
changes. Multi-node jobs need the run directory on a shared file system for that (or the same
placement).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from fedrun.errors import ConfigError

FORMAT = 1


class ClientStateStore:
    def __init__(self, clients: list[int], device: torch.device) -> None:
        self.clients, self.device = set(clients), device
        self.states: dict[int, dict[str, torch.Tensor]] = {}

    def of(self, client: int) -> dict[str, torch.Tensor]:
        """Client `client`'s entries, created empty on first use; the caller may add and change
        tensors in it."""
        return self.states.setdefault(client, {})

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for s in self.states.values() for t in s.values())

    def save(self, folder: Path, rank: int) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"rank{rank}.pt"
        tmp = folder / f".{final.name}.tmp"
        state = {
            "format": FORMAT,
            "clients": {
                c: {k: v.detach().cpu() for k, v in s.items()} for c, s in self.states.items()
            },
        }
        torch.save(state, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        return final

    def load(self, folder: Path) -> None:
        """Every worker file in `folder`; this worker's clients' entries kept."""
        files = sorted(folder.glob("rank*.pt"))
        if not files:
            raise ConfigError(
                "runtime.resume (--resume)",
                f"{folder} holds no per-client state, which this strategy keeps",
                "resume from a checkpoint of a run with the same strategy and stages",
            )
        self.states = {}
        for path in files:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001 - truncated or foreign files raise many types
                raise ConfigError(
                    "runtime.resume (--resume)",
                    f"{path} is not a readable per-client state file ({type(e).__name__})",
                    "resume from another checkpoint",
                ) from None
            for c, s in state["clients"].items():
                if c in self.clients:
                    self.states[int(c)] = {k: v.to(self.device) for k, v in s.items()}
