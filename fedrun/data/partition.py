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
    max_tries: int = 1000,
):
    """Label skew by splitting each class over clients with proportions q_c ~ Dir(alpha * 1_K)
    (Yurochkin et al. 2019; Wang et al. 2020, FedMA; the scheme of most FL benchmarks). Small
    alpha: each class lands on few clients. Redraws until every client has >= min_samples."""
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
    raise ConfigError(
        "data.dirichlet_alpha (--dirichlet-alpha)",
        f"no draw in {max_tries} gave every client >= {min_samples} samples",
        "raise --dirichlet-alpha or lower --min-samples",
    )


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
