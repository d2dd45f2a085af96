"""The shared-memory path for the model vector (one host, gloo on CPU): the files, then whole runs
checked against the single-process oracle, failures on that path, and the fallback to gloo."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from fedrun import shm

from .. import oracle
from ..conftest import spawn_ranks, torchrun
from ..test_e2e import ORACLE_ARGS, TOL, oracle_fedavg
from ..test_reliability import NAN_TASK

SHARED = "gloo on cpu (vectors in shared memory)"


def test_a_mapped_file_is_the_same_memory_in_both_mappings(tmp_path):
    path = tmp_path / "v"
    a = shm.create(path, 10, torch.float32)
    assert torch.equal(a, torch.zeros(10)) and path.stat().st_size == 40
    b = shm.attach(path, 10, torch.float32)
    a[3] = 7.5
    shm.unlink(path)
    shm.unlink(path)  # a second unlink is harmless
    b[4] = -1.0  # the mappings outlive the name
    assert not path.exists() and b[3].item() == 7.5 and a[4].item() == -1.0
    shm.create(tmp_path / "w", 1, torch.float32)
    with pytest.raises(FileExistsError):  # never someone else's file
        shm.create(tmp_path / "w", 1, torch.float32)


def test_a_full_tmpfs_fails_at_creation_not_on_first_touch(tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(shm.NoRoom, match=r"MiB free, needs 4 MiB more"):
        shm.create(tmp_path / "v", 1 << 20, torch.float32)


def test_attach_refuses_a_short_file(tmp_path):
    shm.create(tmp_path / "v", 4, torch.float32)
    with pytest.raises(OSError, match="smaller than 32 bytes"):
        shm.attach(tmp_path / "v", 8, torch.float32)


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [3, 4], ids=["two-workers", "three-workers"])
def test_matches_the_oracle_and_leaves_no_files(tmp_path, nproc):
    """Forced on for a small model; with three workers rank 0 adds three slots (an order gloo
    does not share, hence the oracle's tolerance rather than equality with a gloo run)."""
    where = tmp_path / "shm"
    where.mkdir()
    out = tmp_path / "run"
    res = torchrun(nproc, *ORACLE_ARGS, "--shared-memory", "on", "--shm-dir", str(where), out=out)
    assert res.returncode == 0, res.stderr
    assert SHARED in res.stdout.splitlines()[0]
    expected, _ = oracle_fedavg(ORACLE_ARGS)
    assert oracle.max_diff(res.model(), expected) < TOL
    assert list(where.iterdir()) == []  # unlinked once mapped


@pytest.mark.slow
def test_a_failing_worker_stops_everyone_and_leaves_no_files(tmp_path):
    where = tmp_path / "shm"
    where.mkdir()
    results, seconds = spawn_ranks(3, *NAN_TASK, "--shared-memory", "on", "--shm-dir", str(where))
    assert all(r.returncode != 0 for r in results) and seconds < 30
    assert "round 1: 1 client worker(s) failed" in results[0].stderr
    assert list(where.iterdir()) == []


@pytest.mark.slow
def test_on_without_its_directory_is_one_line_on_rank_zero(tmp_path):
    missing = tmp_path / "nowhere"
    results, seconds = spawn_ranks(3, "--rounds", "2", "--shared-memory", "on", "--shm-dir",
                                   str(missing), "--out", str(tmp_path / "run"))  # fmt: skip
    assert [r.returncode for r in results] == [2, 1, 1] and seconds < 30
    err = results[0].stderr.strip().splitlines()
    assert err == [
        "fedrun: error: runtime.shared_memory (--shared-memory): rank(s) [0, 1, 2] could not "
        f"make their file in {missing} (No such file or directory); free space in --shm-dir or "
        "use auto"
    ]
    assert all("Traceback" not in r.stderr for r in results)


# 1.1M parameters: over the 1M-element line where `auto` switches to shared memory
BIG = ["--dataset", "fake", "--fake-shape", "110000", "--model", "logreg", "--num-clients", "2",
       "--clients-per-round", "2", "--fake-samples", "8", "--fake-test-samples", "4", "--rounds",
       "2", "--batch-size", "4", "--checkpoint-every", "0"]  # fmt: skip


@pytest.mark.slow
def test_auto_uses_shared_memory_for_big_vectors_and_falls_back_to_gloo(tmp_path):
    where = tmp_path / "shm"
    where.mkdir()
    shared = torchrun(3, *BIG, "--shm-dir", str(where), out=tmp_path / "a")
    assert shared.returncode == 0, shared.stderr
    assert SHARED in shared.stdout.splitlines()[0]
    missing = tmp_path / "nowhere"
    fallback = torchrun(3, *BIG, "--shm-dir", str(missing), out=tmp_path / "b")
    assert fallback.returncode == 0, fallback.stderr
    assert (
        f"fedrun: shared memory unavailable, rank(s) [0, 1, 2] could not make their file in "
        f"{missing} (No such file or directory); using gloo"
    ) in fallback.stdout
    assert SHARED not in fallback.stdout
    # two workers: a + b + 0 is exact in any order, so both transports give the same bits
    a, b = shared.model(), fallback.model()
    assert all(torch.equal(a[k], b[k]) for k in a)
    small = torchrun(3, "--rounds", "1", "--shm-dir", str(where), out=tmp_path / "c")
    assert small.returncode == 0 and SHARED not in small.stdout  # 610 parameters: gloo


def test_earlier_attempts_files_are_removed_not_this_ones(tmp_path):
    for name in ("fedrun-j1-a0-bcast", "fedrun-j1-a0-slot1", "fedrun-j1-a1-slot2",
                 "fedrun-j1-a2-bcast", "fedrun-j2-a0-bcast", "other"):  # fmt: skip
        (tmp_path / name).write_bytes(b"")
    gone = shm.remove_earlier_attempts(tmp_path, "j1", 2)
    assert sorted(p.name for p in gone) == [
        "fedrun-j1-a0-bcast", "fedrun-j1-a0-slot1", "fedrun-j1-a1-slot2",
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fedrun-j1-a2-bcast", "fedrun-j2-a0-bcast", "other",
    ]  # fmt: skip
