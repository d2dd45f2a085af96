"""The run directory (rank 0 only): resolved config, per-round metrics, final model."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from fedrun.config import Config, to_toml
from fedrun.errors import ConfigError

_OUT = "runtime.out (--out)"


def default_out() -> Path:
    base = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    path, i = base, 1
    while path.exists():
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    return path


class RunDir:
    """Created before the first collective, so a bad --out stops every rank at start-up."""

    def __init__(self, cfg: Config) -> None:
        path = Path(cfg.runtime.out) if cfg.runtime.out else default_out()
        if path.exists() and not path.is_dir():
            raise ConfigError(_OUT, f"{path} is a file", "pass a directory path")
        if path.is_dir() and any(path.iterdir()) and not cfg.runtime.overwrite:
            raise ConfigError(
                _OUT, f"{path} already holds files", "pass --overwrite or another --out"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / "metrics.jsonl").write_text("")
        except OSError as e:
            raise ConfigError(
                _OUT, f"cannot write to {path} ({e.strerror})", "pick a writable path"
            ) from None
        self.path = path
        cfg.runtime.out = str(path)
        (path / "config.toml").write_text(to_toml(cfg))

    def log_metrics(self, row: dict[str, Any]) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def save_model(self, state_dict: dict[str, torch.Tensor]) -> Path:
        """Atomically: a crash mid-write never leaves a truncated final_model.pt."""
        final = self.path / "final_model.pt"
        tmp = final.with_suffix(".pt.tmp")
        torch.save(state_dict, tmp)
        os.replace(tmp, final)
        return final
