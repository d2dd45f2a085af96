"""The run directory (rank 0 only): resolved config, metrics, partition, plots, final model.

OUT/config.toml, metrics.jsonl, metrics.csv, metrics.png, partition.json, partition.png,
final_model.pt, checkpoints/round_NNNNNN.pt (see fedrun.checkpoint), tensorboard/ (optional).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedrun.config import Config, job_toml

_OUT = "runtime.out (--out)"
CSV_COLUMNS = (
    "round", "train_loss", "fed_loss", "fed_acc", "central_loss", "central_acc",
    "clients", "skipped", "examples", "fed_examples", "bytes", "train_seconds", "seconds",
    "elapsed",
)  # fmt: skip


def default_out() -> Path:
    base = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    path, i = base, 1
    while path.exists():
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    return path


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """A metric that could not be computed is null, not NaN (which JSON does not have)."""
    return {
        k: _clean(v)
        if isinstance(v, dict)
        else None
        if isinstance(v, float) and math.isnan(v)
        else v
        for k, v in row.items()
    }


class RunDir:
    """Created before the first collective, so a bad --out stops every rank at start-up.
    `resuming`: the directory may hold an earlier attempt of this run; nothing is refused."""

    def __init__(self, cfg: Config, path: Path, resuming: bool = False) -> None:
        from fedrun.errors import ConfigError

        if path.exists() and not path.is_dir():
            raise ConfigError(_OUT, f"{path} is a file", "pass a directory path")
        busy = path.is_dir() and any(path.iterdir())
        if busy and not (cfg.runtime.overwrite or resuming):
            raise ConfigError(
                _OUT,
                f"{path} already holds files",
                "pass --overwrite, --resume auto or another --out",
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".fedrun-write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise ConfigError(
                _OUT, f"cannot write to {path} ({e.strerror})", "pick a writable path"
            ) from None
        if busy and not resuming:  # --overwrite: an earlier run's checkpoints must not resume
            shutil.rmtree(path / "checkpoints", ignore_errors=True)
        self.path = path

    def start(self, cfg: Config, history: list[dict[str, Any]]) -> None:
        """Write config.toml and the metrics so far. Called once a resume has loaded its
        checkpoint, so a refused checkpoint leaves the directory as it was."""
        (self.path / "config.toml").write_text(job_toml(cfg))
        self.write_metrics(history)

    # -- metrics -----------------------------------------------------------------------------

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """(Re)write metrics.jsonl and metrics.csv from the rows so far (a resume truncates)."""
        with open(self.path / "metrics.jsonl", "w") as f:
            f.writelines(json.dumps(_clean(r)) + "\n" for r in history)
        with open(self.path / "metrics.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(_clean(r) for r in history)

    def log_metrics(self, row: dict[str, Any]) -> None:
        """Append one round to metrics.jsonl and metrics.csv."""
        clean = _clean(row)
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(clean) + "\n")
        with open(self.path / "metrics.csv", "a", newline="") as f:
            csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore").writerow(clean)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """summary.json: final and best metrics, rounds, seconds, start-up seconds."""
        (self.path / "summary.json").write_text(json.dumps(_clean(summary), indent=2))

    # -- partition ---------------------------------------------------------------------------

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
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        counts = np.array(data["label_counts"], dtype=float)
        fig = Figure(figsize=(6, min(12, 2 + 0.15 * len(counts))))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
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
        return out

    # -- model -------------------------------------------------------------------------------

    def save_model(self, state_dict: dict[str, torch.Tensor]) -> Path:
        """Atomically: a crash mid-write never leaves a truncated final_model.pt."""
        final = self.path / "final_model.pt"
        tmp = final.with_suffix(".pt.tmp")
        torch.save(state_dict, tmp)
        os.replace(tmp, final)
        return final
