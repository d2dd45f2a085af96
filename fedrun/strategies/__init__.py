"""Federated algorithms, one per file, each with a sibling test under tests/strategies/.

A strategy is pure tensor maths: it never imports comm, exchange or torch.distributed. It is
registered by name in fedrun.registry.STRATEGIES; users name theirs as `pkg.module:Class`."""
