"""A plain single-process FedAvg, written the way the tutorials write it by hand. It shares with
fedrun only the data, the initial model, the client sample and the per-client seeds."""

from __future__ import annotations

import copy

import torch
from torch import nn

from fedrun.config import Config, resolve_clients_per_round
from fedrun.sampling import sample_clients
from fedrun.seeding import derive_seed


def fedavg(
    cfg: Config, data: dict[int, tuple[torch.Tensor, torch.Tensor]], model: nn.Module, loss_fn
):
    """For each sampled client: load the global state_dict, train with a fresh SGD, keep the
    state_dict; then average them weighted by n_k (clients without data are left out)."""
    f, t = cfg.fed, cfg.train
    global_sd = copy.deepcopy(model.state_dict())
    k = resolve_clients_per_round(f.clients_per_round, f.num_clients)
    for r in range(1, f.rounds + 1):
        states, weights = [], []
        for c in sample_clients(f.num_clients, k, f.seed, r):
            x, y = data[c]
            if len(x) == 0:
                continue
            model.load_state_dict(global_sd)
            opt = torch.optim.SGD(
                model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay
            )
            seed = derive_seed(f.seed, "client", r, c)
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            model.train()
            for _ in range(t.local_epochs):
                perm = torch.randperm(len(x), generator=gen)
                for i in range(0, len(x), t.batch_size):
                    idx = perm[i : i + t.batch_size]
                    opt.zero_grad()
                    loss_fn(model(x[idx]), y[idx]).backward()
                    opt.step()
            states.append(copy.deepcopy(model.state_dict()))
            weights.append(len(x))
        total = sum(weights)
        global_sd = {
            name: sum(w * s[name] for w, s in zip(weights, states, strict=True)) / total
            for name in global_sd
        }
    return global_sd


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)
