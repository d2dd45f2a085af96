"""Run experience: resume, restarts under torchrun, multi-node, the Python API, reports."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

import fedrun
from fedrun.report import Console

from .conftest import REPO, free_port, torchrun

JOB = (
    "--rounds 8 --checkpoint-every 3 --model mlp --momentum 0.5 --num-clients 12 "
    "--clients-per-round 5"
).split()


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every other run must reproduce bit for bit."""
    out = tmp_path_factory.mktemp("ref") / "run"
    res = torchrun(3, *JOB, out=out)
    assert res.returncode == 0, res.stderr
    return res.model(), _rows(out)


@pytest.mark.slow
def test_resume_is_bitwise_exact(tmp_path, reference):
    out = tmp_path / "run"
    first = torchrun(3, *JOB, "--rounds", "5", out=out)
    assert first.returncode == 0, first.stderr
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == [
        "round_000003.pt",
        "round_000005.pt",
        "run.json",  # whose checkpoints these are (fedrun.checkpoint.check_owner)
    ]
    saved = tmp_path / "round3.pt"
    saved.write_bytes((out / "checkpoints" / "round_000003.pt").read_bytes())
    again = torchrun(3, *JOB, "--resume", "auto", out=out)
    assert again.returncode == 0, again.stderr
    assert "resumed after round 5" in again.stdout
    assert _same(again.model(), reference[0])
    assert [r["round"] for r in _rows(out)] == list(range(1, 9))
    # an explicit checkpoint into a fresh directory: the same model again
    # ... and killed in round 7 under --max-restarts: the restart resumes from this run's own
    # round-6 checkpoint, not from the file it started from
    other = torchrun(
        3, *JOB, "--resume", str(saved), out=tmp_path / "b", env={"FEDRUN_FAULT": "train:1:7"},
        extra=["--max-restarts=1"],
    )  # fmt: skip
    assert other.returncode == 0, other.stderr
    assert "resumed after round 3" in other.stdout and "resumed after round 6" in other.stdout
    assert _same(other.model(), reference[0])
    # ... but not into a folder holding another run's checkpoints, whose round 6 of another job
    # would win rotation and restarts
    foreign = tmp_path / "foreign"
    assert torchrun(3, "--rounds", "6", "--checkpoint-every", "6", out=foreign).returncode == 0
    refused = torchrun(3, *JOB, "--resume", str(saved), out=foreign)
    assert refused.returncode != 0 and "holds checkpoints of another run" in refused.stderr


@pytest.mark.slow
def test_resume_with_another_config_is_refused(tmp_path):
    out = tmp_path / "run"
    assert torchrun(3, *JOB, "--rounds", "3", out=out).returncode == 0
    res = torchrun(3, *JOB, "--resume", "auto", "--lr", "0.2", out=out, timeout=60)
    assert res.returncode != 0
    assert "was made with a different config" in res.stderr
    res = torchrun(3, *JOB, "--resume", "auto", "--hidden", "8", out=out, timeout=60)
    assert res.returncode != 0 and "holds a different model" in res.stderr
    before = (out / "metrics.jsonl").read_text()
    res = torchrun(3, *JOB, "--resume", "auto", "--rounds", "2", out=out, timeout=60)
    assert res.returncode != 0 and "holds round 3, past the last round 2; pass --rounds 3" in (
        res.stderr
    )
    assert (out / "metrics.jsonl").read_text() == before  # a refused resume overwrites nothing


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault",
    [
        "train:2:5",  # a client worker, mid-training
        "reduce:1:4",  # a client worker, entering the reduce
        "broadcast:0:5",  # the server, before the broadcast
        "checkpoint:0:6",  # the server, mid-checkpoint (written, not yet renamed)
    ],
)
def test_killed_rank_restarts_and_finishes_bitwise(tmp_path, reference, fault):
    out = tmp_path / "run"
    res = torchrun(3, *JOB, out=out, env={"FEDRUN_FAULT": fault}, extra=["--max-restarts=1"])
    assert res.returncode == 0, res.stderr
    # the kill really happened and the group restarted from the round-3 checkpoint (for the
    # kill mid-checkpoint: round 6's was never renamed into place, so it is not used)
    assert "resumed after round 3" in res.stdout
    assert _same(res.model(), reference[0])
    rows = _rows(out)
    assert [r["round"] for r in rows] == list(range(1, 9))
    assert [r["central_loss"] for r in rows] == [r["central_loss"] for r in reference[1]]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "resumed"),
    [
        ("train:2:5", "resumed after round 3"),  # mid-training, the files long unlinked
        ("shm:1:0", ""),  # at set-up, holding its file: before the names were unlinked
    ],
)
def test_killed_worker_restarts_bitwise_over_shared_memory(tmp_path, reference, fault, resumed):
    """The restarted attempt makes fresh shared-memory files and removes those the first
    attempt left (they accumulated in /dev/shm before); two workers sum exactly in any order,
    so the gloo reference's bits are expected."""
    where = tmp_path / "shm"
    where.mkdir()
    res = torchrun(
        3, *JOB, "--shared-memory", "on", "--shm-dir", str(where), out=tmp_path / "run",
        env={"FEDRUN_FAULT": fault}, extra=["--max-restarts=1"],
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert resumed in res.stdout and "vectors in shared memory" in res.stdout
    assert _same(res.model(), reference[0])
    assert list(where.iterdir()) == []


def _fedrun_module(*args: str, timeout: float = 120, env: dict | None = None):
    """`python -m fedrun` (forked ranks, no torchrun), under a timeout."""
    full = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "fedrun", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=full)  # fmt: skip


@pytest.mark.slow
def test_python_m_fedrun_restarts_and_equals_torchrun(tmp_path, reference):
    """The forked-ranks launcher runs the same job to the same bits, restarts included."""
    p = _fedrun_module(*JOB, "--max-restarts", "1", "--out", str(tmp_path / "run"),
                       env={"FEDRUN_FAULT": "train:2:5"})  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "resumed after round 3" in p.stdout
    assert _same(torch.load(tmp_path / "run" / "final_model.pt"), reference[0])


@pytest.mark.slow
def test_python_m_fedrun_forks_ranks_from_a_single_threaded_process(tmp_path):
    """Not from the launcher, whose rendezvous store runs a server thread by then: a rank forked
    while that thread holds a lock can hang at start-up (the likely cause of one hung CI run)."""
    p = _fedrun_module("--task", "tests.userpkg.tasks:ForkedFrom", "--num-clients", "5",
                       "--clients-per-round", "5", "--rounds", "1", "--out", str(tmp_path / "run"),
                       env={"FEDRUN_TEST_DIR": str(tmp_path)}, timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert {f.name: f.read_text() for f in tmp_path.glob("[0-9]")} == {"0": "1", "1": "1", "2": "1"}


@pytest.mark.slow
def test_python_m_fedrun_failures_are_one_line(tmp_path):
    p = _fedrun_module("--rounds", "0", timeout=30)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "fedrun: error: fed.rounds (--rounds): must be >= 1, got 0; pass a positive integer"
    ]
    p = _fedrun_module("--nproc-per-node", "1", timeout=30)
    assert p.returncode == 2 and "--nproc-per-node: 1 is too few" in p.stderr
    nan = ["--task", "tests.userpkg.tasks:NaNClient", "--num-clients", "5", "--lr", "0.1",
           "--clients-per-round", "5", "--rounds", "3", "--out", str(tmp_path / "nan")]  # fmt: skip
    p = _fedrun_module(*nan, timeout=60)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "Terminating process" not in p.stderr  # the agent's logs stay quiet
    lines = p.stderr.strip().splitlines()
    assert "client 1 sent a bad update (NaN or Inf)" in p.stderr
    # which ranks the agent has seen exit by then is a race (they leave within ms of each other)
    assert re.fullmatch(
        r"fedrun: error: rank\(s\) \[\d(, \d)*\] failed \(exit code 1\); "
        r"the cause is printed above",
        lines[-1],
    )
    h = _fedrun_module("--help", timeout=30)
    assert h.returncode == 0 and "--nproc-per-node" in h.stdout and "--rounds" in h.stdout


@pytest.mark.slow
def test_killed_worker_without_restarts_stops_everyone(tmp_path):
    res = torchrun(3, *JOB, out=tmp_path / "run", env={"FEDRUN_FAULT": "train:1:2"}, timeout=60)
    assert res.returncode != 0
    assert res.seconds < 40
    assert "exitcode  : -9" in res.stderr  # the summary names the killed rank


@pytest.mark.slow
def test_two_nodes_equal_one_node(tmp_path):
    single = torchrun(4, *JOB, out=tmp_path / "one")
    assert single.returncode == 0, single.stderr
    port, run_id = free_port(), uuid.uuid4().hex
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=2",
        "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id={run_id}",
        "-m", "fedrun.main", *JOB, "--out", str(tmp_path / "two"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        outs = [n.communicate(timeout=120) for n in nodes]
    finally:
        for n in nodes:
            n.kill()
    assert [n.returncode for n in nodes] == [0, 0], outs
    assert "4 ranks: server + 3 worker(s)" in "".join(o for o, _ in outs)
    two = torch.load(tmp_path / "two" / "final_model.pt")
    assert _same(two, single.model())


API_SCRIPT = """\
import fedrun, pickle, sys

def main():
    cfg = pickle.loads(bytes.fromhex(sys.argv[1]))
    return fedrun.launch(cfg, nproc_per_node=3)

{guard}print("ROUNDS", main()["rounds"])
{guard}from multiprocessing import forkserver
{guard}print("SERVER", forkserver._forkserver._forkserver_pid)
"""


def _api_script(tmp_path: Path, cfg: fedrun.Config, guard: bool, timeout: float):
    import pickle

    script = tmp_path / ("guarded.py" if guard else "unguarded.py")
    script.write_text(API_SCRIPT.format(guard='if __name__ == "__main__":\n    ' if guard else ""))
    return subprocess.run(
        [sys.executable, str(script), pickle.dumps(cfg).hex()],
        cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


@pytest.mark.slow
def test_python_api_launch_matches_the_cli(tmp_path):
    """A script as the README writes it (the call under the main guard)."""
    cfg = fedrun.Config()
    cfg.fed.rounds, cfg.fed.num_clients, cfg.fed.clients_per_round = 4, 8, 4
    cfg.runtime.out, cfg.runtime.quiet = str(tmp_path / "api"), True
    p = _api_script(tmp_path, cfg, guard=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "ROUNDS 4" in p.stdout
    assert "SERVER None" in p.stdout  # its fork server is gone (one per launch, fresh env)
    cli = torchrun(
        3, "--rounds", "4", "--num-clients", "8", "--clients-per-round", "4", out=tmp_path / "cli"
    )
    assert _same(torch.load(tmp_path / "api" / "final_model.pt"), cli.model())


def test_api_launch_from_unguarded_script_code_is_refused_before_any_rank_starts(tmp_path):
    """The ranks import the caller's main script (as multiprocessing does): unguarded, each
    would call launch again and fail with pages of tracebacks."""
    cfg = fedrun.Config()
    cfg.runtime.out = str(tmp_path / "api")
    p = _api_script(tmp_path, cfg, guard=False, timeout=60)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1] == (
        "fedrun.errors.FedrunError: fedrun.launch: the ranks import your script, as "
        "multiprocessing does, and would call launch again; put the call under "
        '`if __name__ == "__main__":`'
    )
    assert not (tmp_path / "api").exists()  # no rank ran


@pytest.mark.parametrize(
    "source, guarded",
    [
        ("launch()", False),
        ('if __name__ == "__main__":\n    launch()', True),
        ('if "__main__" == __name__:\n    launch()', True),
        ('if __name__ == "__main__" and ok:\n    launch()', True),
        ('try:\n    if __name__ == "__main__":\n        launch()\nexcept E:\n    pass', True),
        ('if __name__ != "__main__":\n    pass\nelse:\n    launch()', True),
        ('if __name__ == "__main__":\n    pass\nelse:\n    launch()', False),
        ('if __name__ == "x":\n    launch()', False),
        ("with x:\n    launch()", False),
    ],
)
def test_main_guard_is_read_from_the_script(source, guarded):
    """Where `launch()` sits decides whether a rank importing the script would call it again."""
    import ast

    from fedrun.api import _guarded

    line = next(i for i, ln in enumerate(source.splitlines(), 1) if "launch()" in ln)
    assert _guarded(ast.parse(source).body, line) is guarded


def test_api_validates_before_starting_processes():
    cfg = fedrun.Config()
    cfg.fed.rounds = 0
    with pytest.raises(fedrun.errors.ConfigError, match="fed.rounds"):
        fedrun.launch(cfg)


@pytest.mark.slow
def test_reports(tmp_path):
    out = tmp_path / "run"
    res = torchrun(3, "--rounds", "4", "--plot-every", "2", "--tensorboard", "--quiet", out=out)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1].startswith("done: 4 rounds")
    assert "round 1/4" not in res.stdout  # --quiet
    rows = _rows(out)
    with open(out / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert [int(r["round"]) for r in table] == [1, 2, 3, 4]
    assert float(table[-1]["central_acc"]) == pytest.approx(rows[-1]["central_acc"])
    # bytes, x 2 workers: broadcast 2+P floats, the statistics (7 doubles: the base six and the
    # guard's skipped), the reduce of U (P floats); eval: broadcast again, then 5 doubles
    p = 610
    assert rows[0]["bytes"] == 2 * (4 * (2 + p) + 8 * 7 + 4 * p) + 2 * (4 * (2 + p) + 8 * 5)
    assert (out / "metrics.png").stat().st_size > 1000
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("central_acc")]
    assert steps == [1, 2, 3, 4]


def test_console_uses_a_bar_on_a_terminal(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stdout", buf)
    monkeypatch.setattr(buf, "isatty", lambda: True, raising=False)
    con = Console(rounds=3, start=1, quiet=False)
    assert con.bar is not None
    con.bar.fp = buf
    con.round({"round": 1, "clients": 4, "examples": 9, "seconds": 0.1, "train_loss": 0.5})
    con.close()
    assert "1/3" in buf.getvalue() and "clients=4" in buf.getvalue()
    monkeypatch.setattr(buf, "isatty", lambda: False, raising=False)
    assert Console(rounds=3, start=1, quiet=False).bar is None


def test_launch_scripts_pass_shellcheck():
    scripts = [REPO / "launch" / "local.sh", REPO / "launch" / "slurm.sbatch", REPO / ".ci" / "run"]
    shellcheck = os.path.join(os.path.dirname(sys.executable), "shellcheck")
    p = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout
