"""FedYogi (Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2):
fedrun.strategies.fedopt.AdaptiveOptimizer with
    v_t = v_(t-1) - (1 - beta2) Delta_t^2 sign(v_(t-1) - Delta_t^2)."""

from __future__ import annotations

from fedrun.strategies.fedopt import AdaptiveOptimizer


class FedYogi(AdaptiveOptimizer):
    rule = "yogi"
