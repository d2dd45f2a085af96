"""Datasets: what each rank loads. Workers load only their clients' shards, the server only its
central held-out set. Data lives in memory as tensors; batches are cut by index permutation.

The families are registered by name in fedrun.registry.DATASETS; the types live in
fedrun.data.types and are re-exported here."""

from fedrun.data.types import ClientData, Dataset, DatasetInfo, Split

__all__ = ["ClientData", "Dataset", "DatasetInfo", "Split"]
