"""The allocator setting of a rank process (fedrun/malloc.py), measured by page faults."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from fedrun.malloc import USER_SETTINGS, user_allocator_settings

from .conftest import REPO, torchrun
from .userpkg.memprobe import PAGES

GLIBC = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
PROBE = (
    "import sys; from fedrun import malloc; from tests.userpkg.memprobe import refaults; "
    "print(malloc.configure(sys.argv[1]), *refaults())"
)


@pytest.fixture(autouse=True)
def _no_user_allocator_settings(monkeypatch):
    """The user's allocator settings would win over fedrun's: none here, nor in the processes
    these tests start."""
    for name in USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)


def _probe(mode: str, **env: str) -> tuple[str, int, int]:
    """In a fresh process: configure(mode), then the two passes' page faults."""
    p = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=REPO, capture_output=True,
                       text=True, timeout=60, env={**os.environ, **env})  # fmt: skip
    assert p.returncode == 0, p.stderr
    applied, first, second = p.stdout.split()
    return applied, int(first), int(second)


@GLIBC
def test_retain_reuses_freed_memory_where_glibc_gives_it_back():
    applied, first, second = _probe("retain")
    assert applied == "True"
    assert first >= PAGES // 2  # fresh memory is faulted in once...
    assert second <= PAGES // 20  # ...and reused afterwards (some pages of Python's own)
    # glibc's defaults, in the same probe: the second pass faults the memory in again
    applied, first, second = _probe("system")
    assert applied == "False" and second >= first // 2 >= PAGES // 4


@GLIBC
def test_the_users_allocator_settings_win():
    applied, first, second = _probe("retain", MALLOC_TRIM_THRESHOLD_="131072")
    assert applied == "False" and second >= first // 2 >= PAGES // 4


def test_user_allocator_settings_are_recognised():
    assert user_allocator_settings({}) == ""
    assert user_allocator_settings({"MALLOC_MMAP_THRESHOLD_": "1"}) == "MALLOC_MMAP_THRESHOLD_"
    assert user_allocator_settings({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}) == (
        "GLIBC_TUNABLES"
    )
    assert user_allocator_settings({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2"}) == ""
    assert user_allocator_settings({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}) == ""
    assert user_allocator_settings({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}) == "LD_PRELOAD"
    assert user_allocator_settings({"LD_PRELOAD": "/opt/libfoo.so"}) == ""


@pytest.mark.slow
@GLIBC
@pytest.mark.parametrize("mode", ["retain", "system"])
def test_every_rank_runs_with_the_configured_allocator(tmp_path, mode):
    """Under torchrun, the server and the workers keep freed memory by default (`retain`), and
    `--malloc system` leaves glibc's defaults, which fault it in again."""
    job = ["--task", "tests.userpkg.tasks:Refaults", "--num-clients", "5",
           "--clients-per-round", "5", "--rounds", "1"]  # fmt: skip
    if mode == "system":
        job += ["--malloc", "system"]
    res = torchrun(3, *job, out=tmp_path / "run", env={"FEDRUN_TEST_DIR": str(tmp_path)},
                   timeout=90)  # fmt: skip
    assert res.returncode == 0, res.stderr
    faults = {f.name: [int(x) for x in f.read_text().split()] for f in tmp_path.glob("[0-9]")}
    assert sorted(faults) == ["0", "1", "2"]
    for first, second in faults.values():
        if mode == "retain":
            assert second <= PAGES // 20
        else:
            assert second >= first // 2 >= PAGES // 4
