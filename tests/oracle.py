"""A plain single-process FedAvg, written the way the tutorials write it by hand. It shares with
fedrun only the data, the initial model, the client sample and the per-client seeds, and
follows fedrun's documented rules by its own code: a one-sample last batch is dropped
(--drop-last single), parameters take the server step, floating buffers are averaged, integer
buffers start from the initial model's on every client and add up over the federation."""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn

from fedrun.config import Config, resolve_clients_per_round
from fedrun.sampling import sample_clients
from fedrun.seeding import derive_seed


def _passes(n: int, cfg: Config, gen: torch.Generator):
    """Index batches: each pass a fresh permutation; `local_steps` batches across passes if
    set, else `local_epochs` passes."""
    t = cfg.train
    done = 0
    for epoch in itertools.count():
        if t.local_steps <= 0 and epoch == t.local_epochs:
            return
        perm = torch.randperm(n, generator=gen)
        batches = [perm[i : i + t.batch_size] for i in range(0, n, t.batch_size)]
        last = len(batches[-1])
        if (t.drop_last == "single" and last == 1) or (
            t.drop_last == "all" and last < t.batch_size
        ):
            batches.pop()
        if not batches:
            return
        for idx in batches:
            yield idx
            done += 1
            if done == t.local_steps:
                return


def fedavg(
    cfg: Config, data: dict[int, tuple[torch.Tensor, torch.Tensor]], model: nn.Module, loss_fn
):
    """For each sampled client: load the global state_dict, train with a fresh SGD, keep the
    state_dict; then average them weighted by n_k (or 1 each, --weighting uniform; clients
    without data are left out) and step the parameters by --server-lr towards the average."""
    f, t = cfg.fed, cfg.train
    global_sd = copy.deepcopy(model.state_dict())
    initial_ints = {k: v.clone() for k, v in global_sd.items() if not v.is_floating_point()}
    params = {name for name, _ in model.named_parameters()}
    eta = cfg.strategy.server_lr
    k = resolve_clients_per_round(f.clients_per_round, f.num_clients)
    for r in range(1, f.rounds + 1):
        states, weights = [], []
        for c in sample_clients(f.num_clients, k, f.seed, r):
            x, y = data[c]
            if len(x) == 0:
                continue
            model.load_state_dict({**global_sd, **initial_ints})
            opt = torch.optim.SGD(
                model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay
            )
            torch.manual_seed(derive_seed(f.seed, "globals", r, c))
            gen = torch.Generator().manual_seed(derive_seed(f.seed, "shuffle", r, c))
            model.train()
            anchor = [p.detach().clone() for p in model.parameters()]
            mu = cfg.strategy.mu  # FedProx: + mu/2 ||w - w_t||^2, the paper's local objective
            for idx in _passes(len(x), cfg, gen):
                opt.zero_grad()
                loss = loss_fn(model(x[idx]), y[idx])
                if mu:
                    pairs = zip(model.parameters(), anchor, strict=True)
                    prox = sum(((p - a) ** 2).sum() for p, a in pairs)
                    loss = loss + mu / 2 * prox
                loss.backward()
                opt.step()
            states.append(copy.deepcopy(model.state_dict()))
            weights.append(len(x) if cfg.strategy.weighting == "examples" else 1)
        total = sum(weights)
        new = {}
        for name, old in global_sd.items():
            if name in initial_ints:
                new[name] = old + sum(s[name] - initial_ints[name] for s in states)
                continue
            mean = sum(w * s[name] for w, s in zip(weights, states, strict=True)) / total
            new[name] = old + eta * (mean - old) if name in params else mean
        global_sd = new
    return global_sd


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)
