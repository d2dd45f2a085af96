"""Rank 0: the global vector, the strategy, central evaluation, checkpoints, the run directory.

The server never loads client data. It drives the protocol in fedrun.protocol: every collective
it enters, the workers enter in the same order, and it only raises where the workers wait at a
broadcast, after telling them to ABORT.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from fedrun import algorithm, checkpoint
from fedrun.comm import Comm
from fedrun.config import Config, resolve_clients_per_round, result_digest
from fedrun.errors import ConfigError, FedrunError, PeerLost
from fedrun.exchange.packed import Exchange
from fedrun.faults import maybe_crash
from fedrun.flat import FlatSpec
from fedrun.outputs import RunDir, default_out
from fedrun.protocol import Command, EvalSlot, Received, RoundContext, is_eval_round
from fedrun.report import Console, TensorBoard, format_summary, plot_metrics, summarize
from fedrun.sampling import sample_clients
from fedrun.task import load_task


def process_age() -> float:
    """Seconds since this process started (Linux /proc; NaN elsewhere)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return math.nan


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


class Server:
    def __init__(self, cfg: Config, comm: Comm) -> None:
        self.cfg, self.comm = cfg, comm
        self.task = load_task(cfg)
        self.model = self.task.model(comm.device)
        self.spec = FlatSpec.of(self.model)
        self.algo = algorithm.build(cfg, self.spec)
        self.strategy = self.algo.strategy
        # the global integer buffers: the initial model's, plus every client's increments
        self.ints = self.spec.flatten_ints(self.model) if self.spec.ints else None
        self.central = self.task.central_data(comm.device)
        self.task.check_model(self.model, self.central, "the server's central set", cfg)
        # A group restarted by torchrun resumes from its own last checkpoint, in its own run dir.
        out = Path(cfg.runtime.out or comm.first_attempt_value("out", str(default_out())))
        resume = cfg.runtime.resume
        if comm.env.restart_count > 0 and (checkpoint.list_checkpoints(out) or not resume):
            resume = "auto"  # this run's own newest checkpoint beats the one it started from
        self.run_dir = RunDir(cfg, out, resuming=bool(resume))
        self.exchange = Exchange(self.algo.plan, comm, comm.device)
        # the global model lives inside the broadcast buffer
        self.spec.flatten(self.model, out=self.exchange.global_vec)
        self.history: list[dict[str, Any]] = []
        self.start_round = 1
        self.result_digest = result_digest(cfg)
        resumed_from = ""
        if resume:
            resumed_from = self._resume(resume)  # first: its refusal names what differs
            checkpoint.check_owner(out, self.spec.digest(), self.result_digest)
        # where stateful workers keep their per-client stores (fedrun.clientstate)
        comm.put("clientstate/out", str(out.resolve()))
        comm.put("clientstate/resume", resumed_from if self.algo.needs_client_state else "")
        self.run_dir.start(cfg, self.history)
        self.tensorboard = TensorBoard(out / "tensorboard") if cfg.runtime.tensorboard else None
        self.bytes = 0  # payload bytes moved by this round's collectives, all workers together
        # where the workers wait: after the handshake they are in the partition reduce
        self._workers_at_broadcast = False

    @property
    def global_vec(self) -> torch.Tensor:
        return self.exchange.global_vec

    def share_memory(self) -> None:
        """After the handshake, on every rank: the vectors may move to shared memory."""
        self.exchange.share()

    def _resume(self, resume: str) -> str:
        """Load a checkpoint; returns its per-client state directory ("" if none is kept)."""
        out = self.run_dir.path
        if resume == "auto":
            found = checkpoint.list_checkpoints(out)
            if not found:
                return ""  # nothing saved yet: a fresh start in the same directory
            path = found[-1]
        else:
            path = Path(resume)
        state = checkpoint.load(path, self.spec.digest(), self.result_digest)
        if state["round"] > self.cfg.fed.rounds:
            raise ConfigError(
                "fed.rounds (--rounds)",
                f"{path} holds round {state['round']}, past the last round {self.cfg.fed.rounds}",
                f"pass --rounds {state['round']} or more",
            )
        self.global_vec.copy_(state["global"])
        if self.ints is not None:
            self.ints.copy_(state["ints"])
        self.strategy.load_state_dict(state["strategy"])
        self.history = state["history"]
        self.start_round = state["round"] + 1
        checkpoint.restore_rng(state)
        folder = checkpoint.client_state_dir(path)
        if self.algo.needs_client_state and not folder.is_dir():
            raise ConfigError(
                "runtime.resume (--resume)",
                f"{path} has no per-client state beside it ({folder.name}/), which "
                f"{self.cfg.strategy.strategy} keeps",
                "resume from a checkpoint of a run with the same strategy and stages",
            )
        return str(folder.resolve())

    # -- collectives -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _naming_laggards(self, step: str):
        """A reduce that fails names the workers that never reached it."""
        try:
            yield
        except PeerLost:
            late: list[int] = []
            with contextlib.suppress(Exception):  # the store may be gone with a dead peer
                late = self.comm.laggards(step)
            if not late:
                raise
            phase, r = step.split()
            raise PeerLost(
                f"{phase} round {r}: worker rank(s) {late} did not reach the reduce within "
                f"--timeout {self.cfg.runtime.timeout:g} s (stuck or dead); the others did"
            ) from None

    def _moved_bytes(self, nbytes: int) -> None:
        self.bytes += nbytes * (self.comm.world_size - 1)

    def _moved(self, t: torch.Tensor) -> None:
        self._moved_bytes(t.numel() * t.element_size())

    def _send(self, command: Command, round_: int) -> None:
        self._workers_at_broadcast = False
        self.exchange.broadcast(command, round_)
        self._moved_bytes(self.exchange.down_nbytes)

    def _collect(self, buf: torch.Tensor) -> torch.Tensor:
        buf.zero_()  # the server contributes zeros
        self.comm.reduce_sum(buf)
        self._workers_at_broadcast = True
        self._moved(buf)
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
        cfg, rt = self.cfg, self.cfg.runtime
        self._receive_partition()
        console = Console(cfg.fed.rounds, self.start_round, rt.quiet)
        console.line(self._header())
        startup = process_age()
        start = time.perf_counter()
        for r in range(self.start_round, cfg.fed.rounds + 1):
            t0 = time.perf_counter()
            self.bytes = 0
            row: dict[str, Any] = {"round": r}
            k = resolve_clients_per_round(cfg.fed.clients_per_round, cfg.fed.num_clients)
            ctx = RoundContext(
                r, cfg.fed.seed, tuple(sample_clients(cfg.fed.num_clients, k, cfg.fed.seed, r))
            )
            self.strategy.server_downlink(ctx, self.exchange.downlink)
            maybe_crash("broadcast", 0, r)
            self._send(Command.TRAIN, r)
            maybe_crash("reduce", 0, r)
            with self._naming_laggards(f"train {r}"):
                received = self.exchange.receive()
            self._workers_at_broadcast = True
            self._moved_bytes(self.exchange.up_nbytes)
            row.update(self._aggregate(ctx, received))
            row["train_seconds"] = time.perf_counter() - t0  # broadcast -> aggregated
            if is_eval_round(r, cfg.fed.rounds, cfg.eval.eval_every):
                row.update(self._evaluate(r))
            row["bytes"] = self.bytes
            row["seconds"] = time.perf_counter() - t0
            row["elapsed"] = (self.history[-1]["elapsed"] if self.history else 0.0) + row["seconds"]
            self.history.append(row)
            self.run_dir.log_metrics(row)
            console.round(row)
            if self.tensorboard:
                self.tensorboard.log(row)
            if checkpoint.is_checkpoint_round(r, cfg):
                self._checkpoint(r)
            if rt.plot_every and r % rt.plot_every == 0:
                plot_metrics(self.history, self.run_dir.path / "metrics.png")
        path = self.run_dir.save_model(self.spec.state_dict(self.model, self.global_vec, self.ints))
        self._send(Command.STOP, cfg.fed.rounds)
        console.close()
        # after STOP: the workers need not wait for matplotlib
        if self.history:
            plot_metrics(self.history, self.run_dir.path / "metrics.png")
        self.run_dir.plot_partition()
        if self.tensorboard:
            self.tensorboard.close()
        summary = summarize(self.history, time.perf_counter() - start)
        summary["startup_s"] = startup  # server process start -> first round
        self.run_dir.write_summary(summary)
        print(format_summary(summary, str(path)), flush=True)
        return summary

    def _checkpoint(self, r: int) -> Path:
        state = {
            "round": r,
            "global": self.global_vec.detach().cpu().clone(),
            "ints": None if self.ints is None else self.ints.clone(),
            "strategy": self.strategy.state_dict(),
            "history": self.history,
            "spec_digest": self.spec.digest(),
            "result_digest": self.result_digest,
        }
        return checkpoint.save(
            self.run_dir.path,
            state,
            self.cfg.runtime.keep_checkpoints,
            before_replace=lambda: maybe_crash("checkpoint", 0, r),
        )

    def _aggregate(self, ctx: RoundContext, received: Received) -> dict[str, Any]:
        r, stats = ctx.round, received.stats
        failures = int(stats["failures"])
        if failures:
            raise FedrunError(
                f"round {r}: {failures} client worker(s) failed; the cause is printed above"
            )
        if int(stats["clients"]) != len(ctx.sampled):
            raise FedrunError(
                f"round {r}: the workers handled {int(stats['clients'])} clients, "
                f"{len(ctx.sampled)} were sampled; the ranks disagree on the sample (install the "
                "same torch and numpy on every node)"
            )
        for stage in reversed(self.algo.stages):
            received = stage.server(ctx, received)
        if not received.weight > 0:
            raise FedrunError(
                f"round {r}: the {int(stats['clients'])} sampled clients hold no training "
                "examples (total weight 0); give every client data or sample more clients per round"
            )
        new = self.strategy.aggregate(ctx, self.global_vec, received)
        if not torch.isfinite(new).all():
            raise FedrunError(f"round {r}: the aggregated model is not finite; lower --lr")
        self.global_vec.copy_(new)
        if self.ints is not None:
            added = [stats[name] for name in self.algo.int_stats]
            self.ints += torch.tensor(added, dtype=torch.float64).round().long()
        return {
            "train_loss": _ratio(stats["loss_sum"], stats["seen"]),
            "clients": int(stats["clients"]),
            "examples": int(stats["examples"]),
            "skipped": int(stats["skipped"]),
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
        with self._naming_laggards(f"eval {r}"):
            fed = self.exchange.receive_eval()
        self._workers_at_broadcast = True
        self._moved(self.exchange.eval_buf)
        if error is not None:
            raise FedrunError(
                f"round {r}: central evaluation failed ({type(error).__name__}: {error})"
            ) from error
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

    def _header(self) -> str:
        cfg, c = self.cfg, self.comm
        k = resolve_clients_per_round(cfg.fed.clients_per_round, cfg.fed.num_clients)
        resumed = f" | resumed after round {self.start_round - 1}" if self.start_round > 1 else ""
        return (
            f"fedrun | {c.world_size} ranks: server + {c.world_size - 1} worker(s), "
            f"{c.backend} on {c.device.type}{' (vectors in shared memory)' if c.shared else ''} | "
            f"{self._data_name()}, "
            f"{cfg.fed.num_clients} clients ({int(self.partition[:, -1].sum())} train examples), "
            f"{k} per round | {self._model_name()} "
            f"({self.spec.numel} params) | {cfg.strategy.strategy} | {cfg.fed.rounds} rounds "
            f"| out {self.run_dir.path}{resumed}"
        )
