"""Checkpoints (rank 0): everything needed to continue a run bit for bit.

A checkpoint after round r holds the global vector, the strategy's state, r, the metrics so far,
the RNG states, and the hashes of the model layout and of the result-affecting config. Every
random stream in fedrun is derived from (seed, round, client), and workers re-seed torch's,
Python's and numpy's global generators for every client, so no worker state needs saving; the
server's RNG states are saved for user code that draws on rank 0. Files are written to a
temporary name and renamed (atomic on POSIX), so a crash mid-write leaves the previous one whole.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedrun.config import Config
from fedrun.errors import ConfigError

_RESUME = "runtime.resume (--resume)"
_NAME = re.compile(r"^round_(\d{6,})\.pt$")


def checkpoint_dir(out: Path) -> Path:
    return out / "checkpoints"


def save(out: Path, state: dict[str, Any], keep: int, before_replace=None) -> Path:
    """Write OUT/checkpoints/round_NNNNNN.pt atomically; keep the newest `keep`."""
    folder = checkpoint_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    final = round_path(out, state["round"])
    tmp = folder / f".{final.name}.tmp"
    state = {**state, "rng": _rng_states()}
    torch.save(state, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    if before_replace is not None:
        before_replace()  # fault injection: a crash here must leave the previous checkpoint
    os.replace(tmp, final)
    for old in list_checkpoints(out)[:-keep]:
        old.unlink(missing_ok=True)
        shutil.rmtree(client_state_dir(old), ignore_errors=True)
    return final


def client_state_dir(path: Path) -> Path:
    """Where the workers' per-client state of checkpoint `path` lives (round_NNNNNN.clients/)."""
    return path.with_suffix(".clients")


def is_checkpoint_round(round_: int, cfg: Config) -> bool:
    """Rank 0 checkpoints after this round (and stateful workers save their stores in it)."""
    every = cfg.runtime.checkpoint_every
    return every > 0 and (round_ % every == 0 or round_ == cfg.fed.rounds)


def round_path(out: Path, round_: int) -> Path:
    return checkpoint_dir(out) / f"round_{round_:06d}.pt"


def list_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints in OUT, oldest first (temporary files are not listed)."""
    folder = checkpoint_dir(out)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def load(path: Path, spec_digest: int, result_digest: int) -> dict[str, Any]:
    """Read and check a checkpoint; one-line errors for every way it can be wrong."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise ConfigError(
            _RESUME, f"no checkpoint at {path}", "give a file from OUT/checkpoints"
        ) from None
    except Exception as e:  # noqa: BLE001 - truncated or corrupt files raise many types
        raise ConfigError(
            _RESUME, f"{path} is not a readable checkpoint ({type(e).__name__})", "use an older one"
        ) from None
    if not isinstance(state, dict) or "global" not in state:
        raise ConfigError(
            _RESUME, f"{path} is not a fedrun checkpoint", "give a file from OUT/checkpoints"
        )
    if state.get("spec_digest") != spec_digest:
        raise ConfigError(
            _RESUME, f"{path} holds a different model", "resume with the model it was made with"
        )
    if state.get("result_digest") != result_digest:
        raise ConfigError(
            _RESUME,
            f"{path} was made with a different config (data, model, training or strategy)",
            "resume with the same settings (only --rounds and runtime/eval flags may change)",
        )
    return state


def restore_rng(state: dict[str, Any]) -> None:
    rng = state.get("rng")
    if rng:
        torch.random.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])


def _rng_states() -> dict[str, Any]:
    return {
        "torch": torch.random.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
