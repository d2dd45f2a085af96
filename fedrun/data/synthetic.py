"""FedProx's Synthetic(alpha, beta) (Li et al., MLSys 2020, sec. 5.1), generated in memory.

Device k draws n_k = int(LogNormal(4, 2)) + 50 samples (a power law), a model
W_k ~ N(u_k, 1)^{60x10}, b_k ~ N(u_k, 1)^10 with u_k ~ N(0, alpha), and features
x ~ N(v_k, diag(j^-1.2)) with v_k ~ N(B_k, 1)^60, B_k ~ N(0, beta); the label is
argmax(softmax(x W_k + b_k)). The IID variant (FedProx's synthetic_iid) shares one W, b ~ N(0, 1)
across devices and draws every x from N(0, diag(j^-1.2)). Each device keeps the first 90% of its
samples for training and 10% for testing, as in FedProx's scripts.

One difference from the reference script: every device draws from its own stream, seeded by
(seed, device id), instead of one sequential numpy stream. The distributions are the same, and a
worker can generate its own clients without generating everyone else's. The server's central
set draws fresh samples (10% of n_k per device) from every device's distribution on a separate
stream, so it holds no client's data.
"""

from __future__ import annotations

import numpy as np
import torch

from fedrun.config import Config
from fedrun.data.types import ClientData, DatasetInfo, Split
from fedrun.seeding import numpy_rng

DIM, CLASSES = 60, 10
_SCALE = np.power(np.arange(1, DIM + 1, dtype=np.float64), -1.2) ** 0.5  # sqrt of cov diagonal


def _device(cfg: Config, k: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """(n_k, feature mean v_k, W_k, b_k) of device k."""
    d, seed = cfg.data, cfg.fed.seed
    rng = numpy_rng(seed, "synthetic-device", k)
    n = int(rng.lognormal(4, 2)) + 50
    if d.partition == "iid":
        g = numpy_rng(seed, "synthetic-global")
        return n, np.zeros(DIM), g.normal(0, 1, (DIM, CLASSES)), g.normal(0, 1, CLASSES)
    u = rng.normal(0, d.synthetic_alpha)
    mean_x = rng.normal(rng.normal(0, d.synthetic_beta), 1, DIM)
    return n, mean_x, rng.normal(u, 1, (DIM, CLASSES)), rng.normal(u, 1, CLASSES)


def _draw(rng: np.random.Generator, n: int, mean_x, w, b) -> Split:
    x = mean_x + rng.standard_normal((n, DIM)) * _SCALE
    y = np.argmax(x @ w + b, axis=1)
    return Split(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64)))


def _train_len(n: int) -> int:
    return int(0.9 * n)


class Synthetic:
    partitions = ("natural", "iid")

    def info(self, cfg: Config) -> DatasetInfo:
        return DatasetInfo((DIM,), CLASSES, "classification")

    def client_data(self, cfg: Config, client_ids: list[int]) -> dict[int, ClientData]:
        out = {}
        for k in client_ids:
            n, mean_x, w, b = _device(cfg, k)
            s = _draw(numpy_rng(cfg.fed.seed, "synthetic-samples", k), n, mean_x, w, b)
            t = _train_len(n)
            out[k] = ClientData(Split(s.x[:t], s.y[:t]), Split(s.x[t:], s.y[t:]))
        return out

    def central_data(self, cfg: Config) -> Split:
        parts = []
        for k in range(cfg.fed.num_clients):
            n, mean_x, w, b = _device(cfg, k)
            rng = numpy_rng(cfg.fed.seed, "synthetic-central", k)
            parts.append(_draw(rng, n - _train_len(n), mean_x, w, b))
        return Split(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))
