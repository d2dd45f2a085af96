"""What the server shows: one console line (or a tqdm bar) per round, the final summary, the
metrics plot and TensorBoard scalars. Pure formatting plus the optional writers."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

CURVES = ("train_loss", "fed_loss", "central_loss", "fed_acc", "central_acc")


def _fmt(row: dict[str, Any], key: str, spec: str = ".4f") -> str:
    v = row.get(key)
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _metric(row: dict[str, Any], prefix: str) -> str:
    text = f"{prefix} loss {_fmt(row, prefix + '_loss')}"
    return text + (f" acc {_fmt(row, prefix + '_acc')}" if prefix + "_acc" in row else "")


def format_round(row: dict[str, Any], rounds: int) -> str:
    width = len(str(rounds))
    parts = [f"round {row['round']:>{width}}/{rounds}", f"train loss {_fmt(row, 'train_loss')}"]
    parts += [_metric(row, p) for p in ("fed", "central") if p + "_loss" in row]
    parts += [f"{row['clients']} clients {row['examples']} ex", f"{row['seconds']:.3f} s"]
    return " | ".join(parts)


def summarize(history: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Final and best evaluation metrics: central accuracy if there is one, else central loss,
    else federated accuracy, else federated loss (max for accuracies, min for losses)."""
    evals = [h for h in history if "fed_examples" in h]
    final = evals[-1] if evals else {}
    keys = ("central_acc", "central_loss", "fed_acc", "fed_loss")

    def ok(v: Any) -> bool:
        return v is not None and not (isinstance(v, float) and math.isnan(v))

    key = next((k for k in keys if ok(final.get(k))), None)
    out: dict[str, Any] = {
        "rounds": len(history),
        "seconds": seconds,
        "final": {k: v for k, v in final.items() if k.startswith(("central", "fed"))},
    }
    if key is not None:
        pick = max if key.endswith("acc") else min
        best = pick((h for h in evals if ok(h.get(key))), key=lambda h: h[key])
        out.update(best_metric=key, best=best[key], best_round=best["round"])
    return out


def format_summary(s: dict[str, Any], model_path: str) -> str:
    f = s["final"]
    parts = [f"done: {s['rounds']} rounds in {s['seconds']:.2f} s"]
    parts += ["final " + _metric(f, p) for p in ("central", "fed") if p + "_loss" in f]
    if "best" in s:
        parts += [f"best {s['best_metric']} {s['best']:.4f} (round {s['best_round']})"]
    return " | ".join(parts + [f"model {model_path}"])


class Console:
    """A tqdm bar over rounds on a terminal, plain lines otherwise, nothing with --quiet."""

    def __init__(self, rounds: int, start: int, quiet: bool) -> None:
        self.rounds, self.quiet, self.bar = rounds, quiet, None
        if not quiet and sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=rounds, initial=start - 1, unit="round", dynamic_ncols=True, file=sys.stdout
            )

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        elif not self.quiet:
            print(text, flush=True)

    def round(self, row: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.update(1)
            post = {"clients": row["clients"], "loss": _fmt(row, "train_loss")}
            if "central_acc" in row or "fed_acc" in row:
                post["acc"] = _fmt(row, "central_acc" if "central_acc" in row else "fed_acc")
            self.bar.set_postfix(post)
        elif not self.quiet:
            print(format_round(row, self.rounds), flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def plot_metrics(history: list[dict[str, Any]], path: Path) -> Path:
    """Loss (left) and accuracy (right) against rounds, as a PNG. matplotlib's object API only:
    no pyplot state, no GUI backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, kind in zip(axes, ("loss", "acc"), strict=True):
        for key in CURVES:
            if key.endswith(kind):
                pts = [(h["round"], h[key]) for h in history if h.get(key) is not None]
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="." if len(pts) < 30 else "", label=key)
        ax.set_xlabel("round")
        ax.set_ylabel("accuracy" if kind == "acc" else "loss")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


class TensorBoard:
    """Scalars under OUT/tensorboard, one step per round."""

    def __init__(self, path: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(path))

    def log(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "round" and isinstance(value, int | float) and value == value:
                self.writer.add_scalar(key, value, row["round"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
