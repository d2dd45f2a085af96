"""Partitioners: split a pooled dataset's sample indices over clients, from labels alone.

Pure numpy functions of (labels, num_clients, parameters, rng): every worker computes the same
partition and keeps its own clients' rows. Each client's indices come back sorted.
"""

from __future__ import annotations

import numpy as np

from fedrun.errors import ConfigError


def _check_enough(n: int, num_clients: int, min_samples: int) -> None:
    if num_clients * min_samples > n:
        raise ConfigError(
            "data.min_samples (--min-samples)",
            f"{num_clients} clients x {min_samples} samples exceeds the {n} samples available",
            "lower --min-samples or --num-clients",
        )


def iid(labels: np.ndarray, num_clients: int, rng: np.random.Generator, min_samples: int = 0):
    """A uniform random split into near-equal parts (sizes differ by at most one)."""
    _check_enough(len(labels), num_clients, min_samples)
    perm = rng.permutation(len(labels))
    return [np.sort(p) for p in np.array_split(perm, num_clients)]


def dirichlet(
    labels: np.ndarray,
    num_clients: int,
    alpha: float,
    rng: np.random.Generator,
    min_samples: int = 0,
    max_tries: int = 10,
):
    """Label skew by splitting each class over clients with proportions q_c ~ Dir(alpha * 1_K)
    (Yurochkin et al. 2019; Wang et al. 2020, FedMA; the scheme of most FL benchmarks). Small
    alpha: each class lands on few clients. Redraws until every client has >= min_samples, at
    most `max_tries` times; then the last draw's short clients are topped up from the largest
    ones (`top_up`), so the scheme never fails when num_clients x min_samples <= samples and
    costs at most `max_tries` draws (10^4 clients at alpha 0.5 seldom get a draw that holds)."""
    _check_enough(len(labels), num_clients, min_samples)
    classes = np.unique(labels)
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for idx in by_class:
            q = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(q)[:-1] * len(idx)).astype(int)
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].append(chunk)
        out = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(p) for p in out) >= min_samples:
            return out
    return top_up(out, min_samples, rng)


def top_up(parts: list[np.ndarray], min_samples: int, rng: np.random.Generator):
    """Move samples, chosen at random, from the largest clients (largest first, never below
    min_samples) to the clients short of min_samples (in client order) until every client
    holds min_samples. Needs len(parts) x min_samples <= the samples in all parts."""
    parts = list(parts)
    need = [max(0, min_samples - len(p)) for p in parts]
    total, given = sum(need), []
    for k in sorted(range(len(parts)), key=lambda k: (-len(parts[k]), k)):
        short = total - sum(len(g) for g in given)
        surplus = len(parts[k]) - min_samples
        if short == 0 or surplus <= 0:
            break
        perm = rng.permutation(len(parts[k]))
        take = min(surplus, short)
        given.append(parts[k][perm[:take]])
        parts[k] = np.sort(parts[k][perm[take:]])
    pool = np.concatenate(given) if given else np.zeros(0, dtype=np.int64)
    at = 0
    for k, n in enumerate(need):
        if n:
            parts[k] = np.sort(np.concatenate([parts[k], pool[at : at + n]]))
            at += n
    return parts


def shards(labels: np.ndarray, num_clients: int, per_client: int, rng: np.random.Generator):
    """McMahan et al. 2017: sort by label, cut into num_clients * per_client equal shards, give
    each client per_client shards at random. With 2 shards most clients see about 2 classes."""
    n_shards = num_clients * per_client
    if n_shards > len(labels):
        raise ConfigError(
            "data.shards_per_client (--shards-per-client)",
            f"{n_shards} shards requested but only {len(labels)} samples",
            "lower --shards-per-client or --num-clients",
        )
    order = np.argsort(labels, kind="stable")
    pieces = np.array_split(order, n_shards)
    assign = rng.permutation(n_shards).reshape(num_clients, per_client)
    return [np.sort(np.concatenate([pieces[s] for s in row])) for row in assign]


def label_counts(labels: np.ndarray, parts: list[np.ndarray], num_classes: int) -> np.ndarray:
    """clients x classes matrix of sample counts."""
    return np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts])
