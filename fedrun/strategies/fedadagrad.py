"""FedAdagrad (Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2):
fedrun.strategies.fedopt.AdaptiveOptimizer with
    v_t = v_(t-1) + Delta_t^2 (beta2 is not used)."""

from __future__ import annotations

from fedrun.strategies.fedopt import AdaptiveOptimizer


class FedAdagrad(AdaptiveOptimizer):
    rule = "adagrad"
    uses = ("beta1", "tau", "bias_correction")
