"""Per-client stages: an ordered chain of transforms of each client's update on its worker
(weighting aside: guard, clipping, DP, quantising, masking), each with an optional server half
that rank 0 runs in reverse order on the round's sums. Registered in fedrun.registry.STAGES;
never imports comm, exchange or torch.distributed."""
