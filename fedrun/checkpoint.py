"""Checkpoints (rank 0): everything needed to continue a run bit for bit.

A checkpoint after round r holds the global vector, the strategy's state, r, the metrics so far,
the RNG states, and the hashes of the model layout and of the result-affecting config. Every
random stream in fedrun is derived from (seed, round, client), and workers re-seed torch's,
Python's and numpy's global generators for every client, so no worker state needs saving; the
server's RNG states are saved for user code that draws on rank 0. Files are written to a
temporary name and renamed (atomic on POSIX), so a crash mid-write leaves the previous one whole.
"""

from __future__ import annotations

import json
import os
import pickle
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


OWNER = "run.json"  # the digests of the run whose checkpoints a folder holds


def _owner(state: dict[str, Any]) -> dict[str, int]:
    return {"spec_digest": state["spec_digest"], "result_digest": state["result_digest"]}


def check_owner(out: Path, spec_digest: int, result_digest: int) -> None:
    """A run resuming into OUT may only meet its own checkpoints there (the same model and
    result-affecting config, so the same trajectory, bit for bit): rotation and restarts pick
    by round number, and a foreign newer checkpoint would win both."""
    found = list_checkpoints(out)
    if not found:
        return
    mark = checkpoint_dir(out) / OWNER
    try:
        owner = json.loads(mark.read_text())
    except (OSError, ValueError):
        owner = None
    if owner != {"spec_digest": spec_digest, "result_digest": result_digest}:
        raise ConfigError(
            "runtime.out (--out)",
            f"{checkpoint_dir(out)} holds checkpoints of another run ({found[-1].name}, made "
            "with another model or config)",
            "resume into an empty --out, or remove that folder",
        )


def save(out: Path, state: dict[str, Any], keep: int, before_replace=None) -> Path:
    """Write OUT/checkpoints/round_NNNNNN.pt atomically; keep the newest `keep`."""
    folder = checkpoint_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    mark = folder / OWNER
    if not mark.exists():
        mark.write_text(json.dumps(_owner(state)))
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
        # weights_only: tensors, numbers, strings and containers only. A checkpoint is a file a
        # user points at; unpickling arbitrary objects from it would run its code on rank 0.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(
            _RESUME, f"no checkpoint at {path}", "give a file from OUT/checkpoints"
        ) from None
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found is None:  # not a pickle at all: garbage bytes
            raise ConfigError(
                _RESUME,
                f"{path} is not a readable checkpoint (UnpicklingError)",
                "use an older one",
            ) from None
        raise ConfigError(
            _RESUME,
            f"{path} holds a {found.group(1)} object, not only tensors, numbers and strings "
            "(refused unread: loading it could run code)",
            "give a checkpoint fedrun wrote",
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
        n = rng["numpy"]
        np.random.set_state(
            ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
        )
        p = rng["python"]
        random.setstate((p["version"], tuple(p["state"].tolist()), p["gauss_next"]))


def _rng_states() -> dict[str, Any]:
    """The global RNG states as tensors and numbers (what weights_only loading accepts)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    return {
        "torch": torch.random.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {
            "version": version,
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }
