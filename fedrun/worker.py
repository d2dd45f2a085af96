"""Ranks 1..W-1: host virtual clients, train the sampled ones, send one packed sum per round.

A worker answers every broadcast with exactly the collective the server expects, even when none
of its clients is sampled (it sends zeros) and even when its own training raised (it reports the
failure in the FAILURES slot, prints the traceback, and waits for the server's ABORT).
"""

from __future__ import annotations

import math
import sys
import traceback

import torch

from fedrun.comm import Comm
from fedrun.config import Config, resolve_clients_per_round
from fedrun.data import Split
from fedrun.errors import Aborted, FedrunError
from fedrun.exchange import make_exchange
from fedrun.faults import maybe_crash
from fedrun.flat import FlatSpec
from fedrun.optim import SGD
from fedrun.protocol import HEADER, Command, EvalSlot, TrainSlot
from fedrun.sampling import clients_of, host_of, sample_clients
from fedrun.seeding import derive_seed, seed_globals
from fedrun.strategies import build_strategy
from fedrun.task import load_task


def bad_update(delta: torch.Tensor, max_norm: float) -> str:
    """Why a client update must not be aggregated ("" if it may): NaN/Inf, or a norm bound."""
    # summed in float64 on the fly: no float64 copy of the vector (8 bytes a parameter)
    norm = float(torch.linalg.vector_norm(delta, dtype=torch.float64))
    if not math.isfinite(norm):
        return "NaN or Inf"
    if max_norm > 0 and norm > max_norm:
        return f"L2 norm {norm:.4g} > --max-update-norm {max_norm:g}"
    return ""


class Worker:
    def __init__(self, cfg: Config, comm: Comm) -> None:
        self.cfg, self.comm = cfg, comm
        self.task = load_task(cfg)
        dev = comm.device
        self.clients = clients_of(comm.rank, cfg.fed.num_clients, comm.world_size)
        self.data = self.task.client_data(self.clients, dev)
        # One model and one optimizer, reused for every client: the global vector is loaded
        # into it and the optimizer's state is cleared per client.
        self.model = self.task.model(dev)
        self.spec = FlatSpec.of(self.model)
        t = cfg.train
        self.optimizer = SGD(
            self.model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay
        )
        self.strategy = build_strategy(cfg.strategy)
        first = next((c for c, d in self.data.items() if len(d.train)), None)
        if first is not None:
            self.task.check_model(self.model, self.data[first].train, f"client {first}", cfg)
        bdev = comm.buffer_device
        self.bcast = torch.zeros(HEADER + self.spec.numel, dtype=self.spec.dtype, device=bdev)
        self.exchange = make_exchange(
            self.strategy.reduction, comm, self.spec.numel, self.spec.dtype, dev
        )
        self.eval_buf = torch.zeros(len(EvalSlot), dtype=torch.float64, device=bdev)
        self._view_global()
        self.scratch = self.spec.empty(dev)

    def share_memory(self) -> None:
        """After the handshake, on every rank: the vectors may move to shared memory."""
        self.bcast = self.exchange.share(self.bcast)
        self._view_global()

    def _view_global(self) -> None:
        """The global vector is read straight from the broadcast buffer where that is on the
        compute device (nothing writes it before the next broadcast, after this round's reduce);
        else from a copy on the device."""
        same = self.bcast.device == self.comm.device
        self.global_vec = self.bcast[HEADER:] if same else self.spec.empty(self.comm.device)

    def report_partition(self) -> None:
        """Start-up, once: this worker's rows of the clients x (classes + 1) count matrix
        (label counts, then training examples), reduced to the server for partition.json."""
        c = self.task.num_classes
        counts = torch.zeros(self.cfg.fed.num_clients, c + 1, dtype=torch.float64)
        for cid, d in self.data.items():
            counts[cid, c] = len(d.train)
            if c and isinstance(d.train, Split) and len(d.train):
                counts[cid, :c] = torch.bincount(d.train.y.cpu(), minlength=c)[:c].double()
        buf = counts.to(self.comm.buffer_device)
        self.comm.reduce_sum(buf)

    def run(self) -> None:
        self.report_partition()
        while True:
            self.comm.broadcast(self.bcast)
            command, round_ = Command(int(self.bcast[0])), int(self.bcast[1])
            if command is Command.ABORT:
                raise Aborted("stopped by the server (its output shows the cause)")
            if self.global_vec.data_ptr() != self.bcast[HEADER:].data_ptr():
                self.global_vec.copy_(self.bcast[HEADER:])
            if command is Command.STOP:
                return
            if command is Command.TRAIN:
                self._train_round(round_)
            else:
                self._eval_round(round_)

    def _mine(self, sampled: list[int]) -> list[int]:
        return [c for c in sampled if host_of(c, self.comm.world_size) == self.comm.rank]

    def _train_round(self, r: int) -> None:
        cfg = self.cfg
        k = resolve_clients_per_round(cfg.fed.clients_per_round, cfg.fed.num_clients)
        mine = self._mine(sample_clients(cfg.fed.num_clients, k, cfg.fed.seed, r))
        stats = [0.0] * len(TrainSlot)
        self.exchange.reset()
        try:
            for i, c in enumerate(mine):
                self._train_client(r, c, stats)
                if i == 0:
                    maybe_crash("train", self.comm.rank, r)
        except Exception as e:  # report, keep the protocol in step, let the server abort everyone
            if isinstance(e, FedrunError):  # a diagnosed failure: one line
                print(
                    f"fedrun: error: worker rank {self.comm.rank}: {e}", file=sys.stderr, flush=True
                )
            else:
                print(f"fedrun: worker rank {self.comm.rank} failed in round {r}:", file=sys.stderr)
                traceback.print_exc()
            stats = [0.0] * len(TrainSlot)
            stats[TrainSlot.FAILURES] = 1.0
            self.exchange.reset()
        maybe_crash("reduce", self.comm.rank, r)
        self.comm.mark(f"train {r}")
        self.exchange.send(stats)

    def _train_client(self, r: int, c: int, stats: list[float]) -> None:
        """Train client c from the global vector; hand a_c and w_c - w to the exchange."""
        train = self.data[c].train
        weight = self.strategy.client_weight(len(train))
        stats[TrainSlot.CLIENTS] += 1
        if weight == 0:  # no data: contributes nothing, and nothing to divide by
            return
        seed = derive_seed(self.cfg.fed.seed, "client", r, c)
        # dropout and other global-RNG draws of this client: the generators of the devices it
        # computes on, and Python's and numpy's for user code
        seed_globals(seed)
        if self.comm.device.type == "cuda":
            torch.cuda.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)  # this client's shuffling
        self.spec.load(self.model, self.global_vec)
        loss_sum, seen = self.task.train(
            self.model, self.optimizer, train, self.cfg, gen, self.comm.device
        )
        delta = self.spec.flatten(self.model, out=self.scratch).sub_(self.global_vec)
        problem = bad_update(delta, self.cfg.strategy.max_update_norm)
        if problem:
            if self.cfg.strategy.on_bad_update == "fail":
                raise FedrunError(
                    f"round {r}: client {c} sent a bad update ({problem}); lower --lr, or pass "
                    "--on-bad-update skip to drop such clients"
                )
            stats[TrainSlot.SKIPPED] += 1
            return
        self.exchange.add(c, delta, weight)
        stats[TrainSlot.WEIGHT] += weight
        stats[TrainSlot.LOSS_SUM] += loss_sum
        stats[TrainSlot.SEEN] += seen
        stats[TrainSlot.EXAMPLES] += len(train)

    def _eval_round(self, r: int) -> None:
        cfg = self.cfg
        k = resolve_clients_per_round(float(cfg.eval.eval_fraction), cfg.fed.num_clients)
        mine = self._mine(sample_clients(cfg.fed.num_clients, k, cfg.fed.seed, r, "eval"))
        sums = [0.0] * len(EvalSlot)
        try:
            self.spec.load(self.model, self.global_vec)
            for c in mine:
                loss, correct, count = self.task.evaluate(
                    self.model, self.data[c].test, cfg.eval.eval_batch_size, self.comm.device
                )
                sums[EvalSlot.LOSS_SUM] += loss
                sums[EvalSlot.CORRECT] += correct
                sums[EvalSlot.EXAMPLES] += count
                sums[EvalSlot.CLIENTS] += 1
        except Exception:
            print(
                f"fedrun: worker rank {self.comm.rank} failed evaluating round {r}:",
                file=sys.stderr,
            )
            traceback.print_exc()
            sums = [0.0] * len(EvalSlot)
            sums[EvalSlot.FAILURES] = 1.0
        self.eval_buf.copy_(torch.tensor(sums, dtype=torch.float64))
        self.comm.mark(f"eval {r}")
        self.comm.reduce_sum(self.eval_buf)
