"""Rank 0: the global vector, the strategy, central evaluation, the run directory.

The server never loads client data. It drives the protocol in fedrun.protocol: every collective
it enters, the workers enter in the same order, and it only raises where the workers wait at a
broadcast, after telling them to ABORT.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from typing import Any

import torch

from fedrun.comm import Comm
from fedrun.config import Config, resolve_clients_per_round
from fedrun.errors import FedrunError
from fedrun.exchange import RoundUpdates, make_exchange
from fedrun.flat import FlatSpec
from fedrun.outputs import RunDir
from fedrun.protocol import HEADER, Command, EvalSlot, TrainSlot, is_eval_round
from fedrun.strategies import build_strategy
from fedrun.task import load_task


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


class Server:
    def __init__(self, cfg: Config, comm: Comm) -> None:
        self.cfg, self.comm = cfg, comm
        self.task = load_task(cfg)
        self.model = self.task.model(cfg, comm.device)
        self.spec = FlatSpec.of(self.model)
        self.strategy = build_strategy(cfg.strategy)
        self.central = self.task.central_data(comm.device)
        self.run_dir = RunDir(cfg)
        dev = comm.buffer_device
        self.bcast = torch.zeros(HEADER + self.spec.numel, dtype=self.spec.dtype, device=dev)
        self.global_vec = self.bcast[HEADER:]  # the global model lives inside the broadcast buffer
        self.spec.flatten(self.model, out=self.global_vec)
        self.exchange = make_exchange(
            self.strategy.reduction, comm, self.spec.numel, self.spec.dtype, comm.device
        )
        self.eval_buf = torch.zeros(len(EvalSlot), dtype=torch.float64, device=dev)
        self.history: list[dict[str, Any]] = []
        self._workers_at_broadcast = True

    # -- collectives -------------------------------------------------------------------------

    def _send(self, command: Command, round_: int) -> None:
        self.bcast[0], self.bcast[1] = float(command), float(round_)
        self._workers_at_broadcast = False
        self.comm.broadcast(self.bcast)

    def _collect(self, buf: torch.Tensor) -> torch.Tensor:
        buf.zero_()  # the server contributes zeros
        self.comm.reduce_sum(buf)
        self._workers_at_broadcast = True
        return buf

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        try:
            return self._run()
        except BaseException:
            if self._workers_at_broadcast:  # else they are inside a collective: torchrun's job
                with contextlib.suppress(Exception):  # never mask the original error
                    self._send(Command.ABORT, 0)
            raise

    def _receive_partition(self) -> None:
        c = self.task.num_classes
        buf = torch.zeros(
            self.cfg.fed.num_clients, c + 1, dtype=torch.float64, device=self.comm.buffer_device
        )
        self._collect(buf)
        self.partition = buf.cpu().long()
        self.run_dir.write_partition(self.partition[:, :c], self.partition[:, c])

    def _run(self) -> dict[str, Any]:
        cfg = self.cfg
        self._receive_partition()
        self._print_header()
        start = time.perf_counter()
        for r in range(1, cfg.fed.rounds + 1):
            t0 = time.perf_counter()
            row: dict[str, Any] = {"round": r}
            self._send(Command.TRAIN, r)
            updates = self.exchange.receive()
            self._workers_at_broadcast = True
            row.update(self._aggregate(r, updates))
            if is_eval_round(r, cfg.fed.rounds, cfg.eval.eval_every):
                row.update(self._evaluate(r))
            row["seconds"] = time.perf_counter() - t0
            row["elapsed"] = time.perf_counter() - start
            self.history.append(row)
            self.run_dir.log_metrics(row)
            print(format_round(row, cfg.fed.rounds), flush=True)
        path = self.run_dir.save_model(self.spec.state_dict(self.model, self.global_vec))
        self._send(Command.STOP, cfg.fed.rounds)
        self.run_dir.plot_partition()  # after STOP: the workers need not wait for matplotlib
        summary = summarize(self.history, time.perf_counter() - start)
        print(format_summary(summary, str(path)), flush=True)
        return summary

    def _aggregate(self, r: int, updates: RoundUpdates) -> dict[str, Any]:
        stats = updates.stats
        failures = int(stats[TrainSlot.FAILURES])
        if failures:
            raise FedrunError(
                f"round {r}: {failures} client worker(s) raised; see the traceback above"
            )
        if not updates.weight > 0:
            raise FedrunError(
                f"round {r}: the {int(stats[TrainSlot.CLIENTS])} sampled clients hold no training "
                "examples (total weight 0); give every client data or sample more clients per round"
            )
        new = self.strategy.aggregate(self.global_vec, updates)
        if not torch.isfinite(new).all():
            raise FedrunError(f"round {r}: the aggregated model is not finite; lower --lr")
        self.global_vec.copy_(new)
        return {
            "train_loss": _ratio(stats[TrainSlot.LOSS_SUM], stats[TrainSlot.SEEN]),
            "clients": int(stats[TrainSlot.CLIENTS]),
            "examples": int(stats[TrainSlot.EXAMPLES]),
        }

    def _evaluate(self, r: int) -> dict[str, Any]:
        self._send(Command.EVALUATE, r)
        # Central evaluation runs while the workers evaluate; an error in it is raised only after
        # the reduce, so the workers are never left waiting inside it.
        error: BaseException | None = None
        central = None
        try:
            if self.central is not None:
                self.spec.load(self.model, self.global_vec)
                central = self.task.evaluate(
                    self.model, self.central, self.cfg.eval.eval_batch_size, self.comm.device
                )
        except Exception as e:  # noqa: BLE001
            error = e
        fed = self._collect(self.eval_buf).tolist()
        if error is not None:
            raise error
        if fed[EvalSlot.FAILURES]:
            raise FedrunError(f"round {r}: a client worker raised in evaluation; see its traceback")
        with_acc = self.task.kind == "classification" or self.task.eval_fn is not None
        row: dict[str, Any] = {"fed_examples": int(fed[EvalSlot.EXAMPLES])}
        if fed[EvalSlot.EXAMPLES] > 0:  # clients may hold no test split
            row["fed_loss"] = fed[EvalSlot.LOSS_SUM] / fed[EvalSlot.EXAMPLES]
            if with_acc:
                row["fed_acc"] = fed[EvalSlot.CORRECT] / fed[EvalSlot.EXAMPLES]
        if central is not None:
            loss, correct, count = central
            row["central_loss"] = _ratio(loss, count)
            if with_acc:
                row["central_acc"] = _ratio(correct, count)
        return row

    def _data_name(self) -> str:
        d = self.cfg.data
        return f"task {d.task}" if d.task else f"{d.dataset}/{d.partition}"

    def _model_name(self) -> str:
        return type(self.model).__name__ if self.cfg.data.task else self.cfg.model.model

    def _print_header(self) -> None:
        cfg, c = self.cfg, self.comm
        k = resolve_clients_per_round(cfg.fed.clients_per_round, cfg.fed.num_clients)
        print(
            f"fedrun | {c.world_size} ranks: server + {c.world_size - 1} worker(s), "
            f"{c.backend} on {c.device.type} | {self._data_name()}, "
            f"{cfg.fed.num_clients} clients ({int(self.partition[:, -1].sum())} train examples), "
            f"{k} per round | {self._model_name()} "
            f"({self.spec.numel} params) | {cfg.strategy.strategy} | {cfg.fed.rounds} rounds "
            f"| out {self.run_dir.path}",
            file=sys.stdout,
            flush=True,
        )


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
    final = evals[-1]
    keys = ("central_acc", "central_loss", "fed_acc", "fed_loss")
    key = next((k for k in keys if k in final), None)
    if key is None:  # no test data anywhere
        return {"rounds": len(history), "seconds": seconds, "final": {}}
    pick = max if key.endswith("acc") else min
    best = pick(evals, key=lambda h: h[key])
    return {
        "rounds": len(history),
        "seconds": seconds,
        "final": {k: v for k, v in final.items() if k.startswith(("central", "fed"))},
        "best_metric": key,
        "best": best[key],
        "best_round": best["round"],
    }


def format_summary(s: dict[str, Any], model_path: str) -> str:
    f = s["final"]
    parts = [f"done: {s['rounds']} rounds in {s['seconds']:.2f} s"]
    parts += ["final " + _metric(f, p) for p in ("central", "fed") if p + "_loss" in f]
    if "best" in s:
        parts += [f"best {s['best_metric']} {s['best']:.4f} (round {s['best_round']})"]
    return " | ".join(parts + [f"model {model_path}"])
