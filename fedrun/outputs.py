"""The run directory (rank 0 only): resolved config, per-round metrics, final model."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
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
        """One JSON object per line; a metric that could not be computed is null, not NaN."""
        clean = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(clean) + "\n")

    def write_partition(self, label_counts: torch.Tensor, train_examples: torch.Tensor) -> None:
        """partition.json: per-client training examples and label counts (clients x classes)."""
        data = {
            "num_clients": len(train_examples),
            "num_classes": label_counts.shape[1],
            "train_examples": train_examples.tolist(),
            "label_counts": label_counts.tolist(),
        }
        (self.path / "partition.json").write_text(json.dumps(data))

    def plot_partition(self) -> Path | None:
        """partition.png: a clients x classes heatmap of label counts (none without classes)."""
        data = json.loads((self.path / "partition.json").read_text())
        if not data["num_classes"]:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        counts = np.array(data["label_counts"], dtype=float)
        fig, ax = plt.subplots(figsize=(6, min(12, 2 + 0.15 * len(counts))))
        im = ax.imshow(counts, aspect="auto", interpolation="nearest", cmap="viridis")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("class")
        ax.set_ylabel("client")
        ax.set_title(f"label counts per client ({len(counts)} clients)")
        fig.colorbar(im, ax=ax, label="training examples")
        fig.tight_layout()
        out = self.path / "partition.png"
        fig.savefig(out, dpi=100)
        plt.close(fig)
        return out

    def save_model(self, state_dict: dict[str, torch.Tensor]) -> Path:
        """Atomically: a crash mid-write never leaves a truncated final_model.pt."""
        final = self.path / "final_model.pt"
        tmp = final.with_suffix(".pt.tmp")
        torch.save(state_dict, tmp)
        os.replace(tmp, final)
        return final
