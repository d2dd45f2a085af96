"""Ranks 1..W-1: host virtual clients, train the sampled ones, send the plan's sums per round.

A worker answers every broadcast with exactly the collectives the server expects, even when none
of its clients is sampled (it sends zeros) and even when its own training raised (it reports the
failure in the `failures` statistic, prints the traceback, and waits for the server's ABORT).
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import torch

from fedrun import algorithm, checkpoint
from fedrun.clientstate import ClientStateStore
from fedrun.comm import Comm
from fedrun.config import Config, resolve_clients_per_round
from fedrun.data.types import Split
from fedrun.errors import Aborted, FedrunError
from fedrun.exchange.packed import Exchange
from fedrun.faults import maybe_crash
from fedrun.flat import FlatSpec
from fedrun.optim import SGD
from fedrun.protocol import ClientRound, Command, EvalSlot, RoundContext
from fedrun.sampling import clients_of, host_of, sample_clients
from fedrun.seeding import derive_seed, seed_globals
from fedrun.task import load_task


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
        self.algo = algorithm.build(cfg, self.spec)
        self.strategy, self.stages = self.algo.strategy, self.algo.stages
        # every client starts from the initial model's integer buffers (fedrun.flat)
        self.int_init = self.spec.flatten_ints(self.model) if self.spec.ints else None
        self.store = ClientStateStore(self.clients, dev) if self.algo.needs_client_state else None
        first = next((c for c, d in self.data.items() if len(d.train)), None)
        if first is not None:
            self.task.check_model(
                self.model, self.data[first].train, f"client {first}", cfg, train=True
            )
        self.exchange = Exchange(self.algo.plan, comm, dev)
        self.scratch = self.spec.empty(dev)

    def share_memory(self) -> None:
        """After the handshake, on every rank: the vectors may move to shared memory."""
        self.exchange.share()

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
        if self.store is not None:  # rank 0 published where the state lives before the handshake
            self.state_out = Path(self.comm.fetch("clientstate/out"))
            resume = self.comm.fetch("clientstate/resume")
            if resume:
                self.store.load(Path(resume))
        while True:
            command, round_ = self.exchange.wait_broadcast()
            if command is Command.ABORT:
                raise Aborted("stopped by the server (its output shows the cause)")
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
        sampled = sample_clients(cfg.fed.num_clients, k, cfg.fed.seed, r)
        ctx = RoundContext(r, cfg.fed.seed, tuple(sampled))
        sums, stats = self.exchange.reset()
        try:
            for i, c in enumerate(self._mine(sampled)):
                self._train_client(ctx, c, sums, stats)
                if i == 0:
                    maybe_crash("train", self.comm.rank, r)
            if self.store is not None and checkpoint.is_checkpoint_round(r, cfg):
                path = checkpoint.client_state_dir(checkpoint.round_path(self.state_out, r))
                self.store.save(path, self.comm.rank)
        except Exception as e:  # report, keep the protocol in step, let the server abort everyone
            if isinstance(e, FedrunError):  # a diagnosed failure: one line
                print(
                    f"fedrun: error: worker rank {self.comm.rank}: {e}", file=sys.stderr, flush=True
                )
            else:
                print(f"fedrun: worker rank {self.comm.rank} failed in round {r}:", file=sys.stderr)
                traceback.print_exc()
            sums, stats = self.exchange.reset()
            stats["failures"] = 1.0
        maybe_crash("reduce", self.comm.rank, r)
        self.comm.mark(f"train {r}")
        self.exchange.send(stats)

    def _train_client(
        self, ctx: RoundContext, c: int, sums: dict[str, torch.Tensor], stats: dict[str, float]
    ) -> None:
        """Train client c from the global vector; its staged update joins the round's sums."""
        train = self.data[c].train
        n = len(train)
        weight = self.strategy.client_weight(n)
        stats["clients"] += 1
        if weight == 0:  # no data: contributes nothing, and nothing to divide by
            return
        # Two streams per (round, client), one per purpose: the shuffling, and the global RNGs
        # that dropout and user code (augmentation) draw from, on every device it computes on.
        # One seed for both made the permutation and the dropout masks read the same numbers.
        seed = derive_seed(self.cfg.fed.seed, "globals", ctx.round, c)
        seed_globals(seed)
        if self.comm.device.type == "cuda":
            torch.cuda.manual_seed(seed)
        gen = torch.Generator().manual_seed(derive_seed(self.cfg.fed.seed, "shuffle", ctx.round, c))
        w = self.exchange.global_vec
        self.spec.load(self.model, w)
        if self.int_init is not None:
            self.spec.load_ints(self.model, self.int_init)
        client = ClientRound(
            ctx, c, n, weight, w, self.exchange.downlink, self.store.of(c) if self.store else {}
        )
        hook = self.strategy.grad_hook(client, self.model)
        loss_sum, seen = self.task.train(
            self.model, self.optimizer, train, self.cfg, gen, self.comm.device, hook
        )
        delta: torch.Tensor | None = self.spec.flatten(self.model, out=self.scratch).sub_(w)
        for stage in self.stages:
            delta = stage.client(client, delta, stats)
            if delta is None:  # left out of the round (counted by the stage)
                return
        self.strategy.contribute(client, delta, sums, stats)
        stats["weight"] += weight
        stats["loss_sum"] += loss_sum
        stats["seen"] += seen
        stats["examples"] += n
        if self.int_init is not None:
            added = (self.spec.flatten_ints(self.model) - self.int_init).tolist()
            for name, v in zip(self.algo.int_stats, added, strict=True):
                stats[name] += v

    def _eval_round(self, r: int) -> None:
        cfg = self.cfg
        k = resolve_clients_per_round(float(cfg.eval.eval_fraction), cfg.fed.num_clients)
        mine = self._mine(sample_clients(cfg.fed.num_clients, k, cfg.fed.seed, r, "eval"))
        sums = [0.0] * len(EvalSlot)
        try:
            self.spec.load(self.model, self.exchange.global_vec)
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
        self.comm.mark(f"eval {r}")
        self.exchange.send_eval(sums)
