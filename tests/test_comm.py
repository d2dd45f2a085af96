"""Device and backend choice from what a rank sees (no GPU needed: the CUDA queries are faked)."""

import pytest
import torch

from fedrun.comm import LaunchEnv, pick_backend, pick_device
from fedrun.config import RuntimeConfig
from fedrun.errors import ConfigError


def _env(local_rank=1, local_world=3):
    return LaunchEnv(local_rank, local_world, local_rank, local_world, "127.0.0.1", 1, 0)


@pytest.fixture
def gpus(monkeypatch):
    def see(n: int, visible: str | None = None):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)

    return see


def test_one_gpu_per_local_rank(gpus):
    gpus(3)
    assert pick_device(RuntimeConfig(), _env(2)) == torch.device("cuda", 2)


def test_per_rank_isolation_uses_the_one_visible_gpu(gpus):
    """Each rank given its own GPU through its own CUDA_VISIBLE_DEVICES sees one device:
    cuda:0 is that rank's GPU (it fell back to CPU before)."""
    gpus(1, visible="5")
    dev = pick_device(RuntimeConfig(), _env(2))
    assert dev == torch.device("cuda", 0)
    assert pick_backend(RuntimeConfig(), dev) == "nccl"


def test_too_few_gpus_fall_back_to_cpu_saying_why(gpus, capsys):
    gpus(2)
    assert pick_device(RuntimeConfig(), _env(0)) == torch.device("cpu")
    assert "2 GPU(s) for 3 ranks on this node: running on CPU" in capsys.readouterr().out
    gpus(1, visible="0,1")  # not a per-rank GPU: two visible names
    assert pick_device(RuntimeConfig(), _env(1)) == torch.device("cpu")
    with pytest.raises(ConfigError, match="3 ranks on this node, 1 GPU"):
        pick_device(RuntimeConfig(device="cuda"), _env(1))


def test_no_gpu(gpus):
    gpus(0)
    assert pick_device(RuntimeConfig(), _env()) == torch.device("cpu")
    with pytest.raises(ConfigError, match="cuda requested but no GPU is visible"):
        pick_device(RuntimeConfig(device="cuda"), _env())
