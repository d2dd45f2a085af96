"""The start-up handshake and the round's sanity checks, without a process group."""

import numpy as np
import pytest
import torch

from fedrun.config import parse_args
from fedrun.errors import FedrunError
from fedrun.main import config_digest, environment_digest, handshake


class RowsComm:
    """all_gather_ints answers with the rows given: what every rank would have sent."""

    def __init__(self, rows):
        self.rows = rows

    def all_gather_ints(self, values):
        assert values == self.rows[0]  # this process is rank 0
        return self.rows


def _row(cfg, env=None):
    return [0, 7, config_digest(cfg), environment_digest(cfg) if env is None else env]


def test_ranks_computing_other_samples_or_versions_are_refused():
    cfg = parse_args([])
    good = _row(cfg)
    assert handshake(RowsComm([good, good, good]), 0, 7, cfg) == []
    with pytest.raises(FedrunError, match=r"ranks \[2\] have different torch/numpy versions") as e:
        handshake(RowsComm([good, good, _row(cfg, env=123)]), 0, 7, cfg)
    assert f"rank 0: torch {torch.__version__}, numpy {np.__version__}" in str(e.value)


def test_the_environment_digest_covers_the_sample():
    a, b = parse_args(["--seed", "1"]), parse_args(["--seed", "2"])
    assert environment_digest(a) != environment_digest(b)
    assert environment_digest(a) == environment_digest(parse_args(["--seed", "1"]))


def test_a_failed_set_up_is_reported_before_any_comparison():
    cfg = parse_args([])
    rows = [_row(cfg), [1, 0, 0, 0], _row(cfg, env=5)]
    assert handshake(RowsComm(rows), 0, 7, cfg) == [1]


def test_deterministic_sets_what_cuda_needs(monkeypatch):
    from fedrun.main import set_deterministic

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    try:
        set_deterministic(False)
        assert not torch.are_deterministic_algorithms_enabled()
        set_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, before[1]
