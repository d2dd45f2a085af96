"""Benchmarks, side by side: `python -m fedrun.bench [--workloads A,B,C,D,E] [--json FILE]`.

For each workload it runs, in one invocation:
  * fedrun through torchrun (end to end, and the steady-state round time from metrics.jsonl);
  * a bare single-process FedAvg loop doing the same work, as the tutorials write it;
  * the compute ceiling: the same local training split over the same worker processes with no
    federated machinery at all (no broadcast, no reduce, no evaluation), in processes set up as
    fedrun's ranks are (one torch thread, freed memory retained) and with fedrun's local SGD
    (the bare loop keeps torch.optim.SGD, as users write it).
A: the seed job (CIFAR-shaped fake data, the seed CNN, 2 clients x 5000, batch 32, SGD 0.001
   momentum 0.9, 1 epoch, 3 rounds, 3 processes). B: 100 clients x 500, 10 per round, 5 rounds.
C: 10,000 clients x 20, 1,000 per round, logistic regression. D: broadcast + reduce of 10M and
100M floats against a memory copy of the same bytes. E: peak RSS of server and worker with 100
vs 10,000 clients. `--small` shrinks every size (what the tests run). Prints a table and writes
JSON. Never run timing assertions on this in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

WORKLOADS = {
    # name: (model, shape, clients, samples, per_round, rounds, lr, momentum)
    "A": ("cnn", "3,32,32", 2, 5000, 2, 3, 0.001, 0.9),
    "B": ("cnn", "3,32,32", 100, 500, 10, 5, 0.001, 0.9),
    "C": ("logreg", "20", 10_000, 20, 1000, 5, 0.05, 0.0),
}
SMALL = {"A": (2, 200, 2, 3), "B": (10, 50, 4, 3), "C": (200, 10, 50, 3)}
NPROC = 3


@dataclass
class Job:
    name: str
    model: str
    shape: str
    clients: int
    samples: int
    per_round: int
    rounds: int
    lr: float
    momentum: float
    batch: int = 32
    extra: dict = field(default_factory=dict)

    def fedrun_args(self) -> list[str]:
        return [
            "--dataset", "fake", "--fake-shape", self.shape, "--fake-samples", str(self.samples),
            "--fake-test-samples", "100", "--model", self.model, "--num-clients", str(self.clients),
            "--clients-per-round", str(self.per_round), "--rounds", str(self.rounds),
            "--lr", str(self.lr), "--momentum", str(self.momentum), "--batch-size", str(self.batch),
            "--eval-every", "0", "--eval-fraction", "0.001", "--checkpoint-every", "0",
            "--plot-every", "0", "--quiet",
        ]  # fmt: skip


def job(name: str, small: bool) -> Job:
    model, shape, clients, samples, per_round, rounds, lr, momentum = WORKLOADS[name]
    if small:
        clients, samples, per_round, rounds = SMALL[name]
    return Job(name, model, shape, clients, samples, per_round, rounds, lr, momentum)


def _env(threads: int = 1) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}


# --- the three contenders ---------------------------------------------------------------------


LAUNCHERS = ("torchrun", "python -m fedrun")


def _fedrun_cmd(j: Job, out: Path, launcher: str = "torchrun") -> list[str]:
    """`torchrun --nproc_per_node=3 -m fedrun.main` (on a free port), or the forked-ranks launcher
    `python -m fedrun --nproc-per-node 3` (one node, torch imported once)."""
    from fedrun.comm import free_port

    if launcher == "torchrun":  # as the README runs it: torchrun's static rendezvous
        cmd = [sys.executable, "-m", "torch.distributed.run", "--master-addr=127.0.0.1",
               f"--master-port={free_port()}", f"--nproc_per_node={NPROC}", "-m",
               "fedrun.main"]  # fmt: skip
    else:
        cmd = [sys.executable, "-m", "fedrun", f"--nproc-per-node={NPROC}"]
    return [*cmd, *j.fedrun_args(), "--out", str(out)]


def run_fedrun(j: Job, out: Path, launcher: str = "torchrun") -> dict:
    cmd = _fedrun_cmd(j, out, launcher)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(f"fedrun failed:\n{p.stderr[-3000:]}")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    # steady state: the rounds after the first (warm-up), their training phase only (broadcast
    # -> aggregated; the ceiling does not evaluate)
    steady = [r["train_seconds"] for r in rows[1:]] or [rows[-1]["train_seconds"]]
    startup = json.loads((out / "summary.json").read_text())["startup_s"]
    return {
        "end_to_end_s": wall,
        "startup_s": startup,  # server process start -> first round (imports, data, handshake)
        "round_s": sum(steady) / len(steady),
        "rounds": len(rows),
    }


def _internal(role: str, j: Job, *extra: str, threads: int = 1) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "fedrun.bench",
        "--internal",
        role,
        "--job",
        json.dumps(j.__dict__),
        *extra,
    ]
    return subprocess.Popen(cmd, env=_env(threads), stdout=subprocess.PIPE, text=True)


def run_bare(j: Job) -> dict:
    t0 = time.perf_counter()
    p = _internal("bare", j, threads=NPROC - 1)
    out = json.loads(p.communicate()[0].strip().splitlines()[-1])
    return {"end_to_end_s": time.perf_counter() - t0, **out}


def run_ceiling(j: Job) -> dict:
    procs = [_internal("ceiling", j, "--rank", str(r)) for r in range(1, NPROC)]
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    rounds = [max(r["rounds"][i] for r in results) for i in range(j.rounds)]
    steady = rounds[1:] or rounds
    retained = all(r["malloc_retained"] for r in results)
    return {"round_s": sum(steady) / len(steady), "malloc_retained": retained}


def workload(j: Job, repeat: int) -> dict:
    """A, B or C: each contender `repeat` times, interleaved so that a slow spell of the machine
    hits them alike, and in a rotating order, so that none always runs after the same one (in
    one check, forked ranks right after a torchrun run computed ~1% slower); medians. The round
    time is fedrun's training phase after the first round: pooled over both launchers (they run
    the same ranks) and per launcher."""
    contenders = (*LAUNCHERS, "bare", "ceiling")
    runs: dict[str, list[dict]] = {k: [] for k in contenders}
    for i in range(repeat):
        for k in contenders[i % len(contenders) :] + contenders[: i % len(contenders)]:
            if k in LAUNCHERS:
                with tempfile.TemporaryDirectory() as tmp:
                    runs[k].append(run_fedrun(j, Path(tmp) / "run", k))
            else:
                runs[k].append(run_bare(j) if k == "bare" else run_ceiling(j))
    fed_rounds = [r["round_s"] for k in LAUNCHERS for r in runs[k]]
    by_launcher = {k: statistics.median(r["round_s"] for r in runs[k]) for k in LAUNCHERS}
    fed = {
        "round_s": statistics.median(fed_rounds),
        "round_s_by_launcher": by_launcher,
        "startup_s": statistics.median(r["startup_s"] for r in runs["torchrun"]),
    }
    ceil = {"round_s": statistics.median(r["round_s"] for r in runs["ceiling"])}
    per_worker = j.per_round / (NPROC - 1)
    return {
        "fedrun": fed,
        "ceiling": ceil,
        "end_to_end_s": {
            k: statistics.median(r["end_to_end_s"] for r in runs[k]) for k in (*LAUNCHERS, "bare")
        },
        "throughput_vs_ceiling": ceil["round_s"] / fed["round_s"],
        "throughput_vs_ceiling_by_launcher": {
            k: ceil["round_s"] / v for k, v in by_launcher.items()
        },
        "overhead_ms_per_client": (fed["round_s"] - ceil["round_s"]) / per_worker * 1e3,
        "runs": runs,
    }


# --- what runs inside the helper processes ----------------------------------------------------


def _setup(j: Job):
    import torch

    from fedrun.config import Config
    from fedrun.models import build_model
    from fedrun.registry import DATASETS

    cfg = Config()
    cfg.data.dataset, cfg.data.fake_shape, cfg.data.fake_samples = "fake", j.shape, j.samples
    cfg.model.model, cfg.fed.num_clients = j.model, j.clients
    fake = DATASETS.load("fake")
    info = fake.info(cfg)
    return torch, cfg, fake, build_model(cfg, info)


def _local_train(torch, model, x, y, j: Job, gen, sgd) -> None:
    import torch.nn.functional as F

    opt = sgd(model.parameters(), lr=j.lr, momentum=j.momentum)
    perm = torch.randperm(len(x), generator=gen)
    for i in range(0, len(x), j.batch):
        idx = perm[i : i + j.batch]
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()


def internal_bare(j: Job) -> dict:
    """The tutorials' loop: one process, state_dicts, a weighted average."""
    import copy

    from fedrun.sampling import sample_clients

    torch, cfg, ds, model = _setup(j)
    data = ds.client_data(cfg, list(range(j.clients)))
    global_sd = copy.deepcopy(model.state_dict())
    gen = torch.Generator().manual_seed(0)
    for r in range(1, j.rounds + 1):
        states, weights = [], []
        for c in sample_clients(j.clients, j.per_round, 0, r):
            model.load_state_dict(global_sd)
            _local_train(torch, model, data[c].train.x, data[c].train.y, j, gen, torch.optim.SGD)
            states.append(copy.deepcopy(model.state_dict()))
            weights.append(len(data[c].train))
        total = sum(weights)
        global_sd = {
            k: sum(w * s[k] for w, s in zip(weights, states, strict=True)) / total
            for k in global_sd
        }
    return {"rounds": j.rounds}


def internal_ceiling(j: Job, rank: int) -> dict:
    """Worker `rank`'s share of local training, timed per round; nothing else. The process runs
    as fedrun's ranks do (one torch thread, freed memory retained): the ceiling is the training,
    not a process setting fedrun makes, and it trains with fedrun's SGD (fedrun/optim.py): the
    ceiling is the same local training, the gap the federated machinery."""
    from fedrun import malloc
    from fedrun.optim import SGD
    from fedrun.sampling import clients_of, host_of, sample_clients

    torch, cfg, ds, model = _setup(j)
    torch.set_num_threads(1)
    retained = malloc.configure(cfg.runtime.malloc)
    data = ds.client_data(cfg, clients_of(rank, j.clients, NPROC))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    times = []
    for r in range(1, j.rounds + 1):
        t0 = time.perf_counter()
        for c in sample_clients(j.clients, j.per_round, 0, r):
            if host_of(c, NPROC) == rank:
                model.load_state_dict(start)
                _local_train(torch, model, data[c].train.x, data[c].train.y, j, gen, SGD)
        times.append(time.perf_counter() - t0)
    return {"rounds": times, "malloc_retained": retained}


# --- D and E ----------------------------------------------------------------------------------


def _collective_worker(rank: int, port: int, numel: int, reps: int, mode: str, q) -> None:
    """One rank of D: fedrun's own exchange moving a round's segments (the broadcast of
    [header | w], the float64 statistics reduce, the reduce of U), through gloo or through
    shared memory."""
    import torch

    from fedrun.comm import Comm, LaunchEnv
    from fedrun.config import RuntimeConfig
    from fedrun.exchange.packed import Exchange
    from fedrun.protocol import Command
    from fedrun.wire import WirePlan

    torch.set_num_threads(1)
    env = LaunchEnv(rank, NPROC, rank, NPROC, "127.0.0.1", port, 0)
    comm = Comm(env, RuntimeConfig(shared_memory=mode, timeout=600))
    ex = Exchange(WirePlan.default(numel, torch.float32), comm, torch.device("cpu"))
    ex.share()
    times = []
    for _ in range(reps):
        if rank:  # a worker's sum, written where it lies (rank 0 read the slots last round)
            sums, stats = ex.reset()
            sums["update"].fill_(1.0)
        comm.all_gather_ints([0])  # start together
        t0 = time.perf_counter()
        if rank == 0:
            ex.broadcast(Command.TRAIN, 1)
            got = ex.receive()
        else:
            ex.wait_broadcast()
            ex.send(stats)
        times.append(time.perf_counter() - t0)
    if rank == 0:
        if got.update[0].item() != NPROC - 1:  # the workers' ones, summed
            raise RuntimeError(f"D: reduce gave {got.update[0].item()}, not {NPROC - 1}")
        q.put(min(times))
    comm.close()


def aggregation(numel: int, reps: int = 3) -> dict:
    """A round's broadcast + reduce of `numel` float32 over 3 ranks through fedrun's Comm, by
    gloo and by shared memory, against torch's memory copy of the bytes those collectives
    deliver (2 x numel x 4 bytes per worker)."""
    import torch
    import torch.multiprocessing as mp

    from fedrun.comm import free_port

    ctx = mp.get_context("spawn")
    seconds = {}
    for mode in ("off", "on"):
        port = free_port()
        q = ctx.Queue()
        procs = [
            ctx.Process(target=_collective_worker, args=(r, port, numel, reps, mode, q))
            for r in range(NPROC)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=600)
        if any(p.exitcode for p in procs) or q.empty():
            raise RuntimeError(f"D ({numel} floats, shared memory {mode}): a rank failed")
        seconds[mode] = q.get()
    src, dst = torch.ones(numel), torch.empty(numel)
    copies = []
    for _ in range(reps):
        t0 = time.perf_counter()
        dst.copy_(src)
        copies.append(time.perf_counter() - t0)
    moved = 2 * numel * 4 * (NPROC - 1)  # bytes the server sends and receives
    copy_bw = numel * 4 / min(copies)
    return {
        "numel": numel,
        "memcpy_s": min(copies),
        "memcpy_GBps": copy_bw / 1e9,
        **{
            f"{name}_{k}": v
            for name, t in (("gloo", seconds["off"]), ("shm", seconds["on"]))
            for k, v in (("s", t), ("GBps", moved / t / 1e9), ("ratio", moved / t / copy_bw))
        },
    }


def peak_rss(clients: int, small: bool) -> dict:
    """VmHWM of every rank for a short logistic-regression run with `clients` clients."""
    from fedrun.procs import watch_ranks

    j = Job("E", "logreg", "20", clients, 20, min(100, clients), 3, 0.05, 0.0)
    with tempfile.TemporaryDirectory(prefix="fedrun-bench-") as tmp:
        log = Path(tmp) / "stderr.log"
        with open(log, "w") as err:  # a file, not a pipe nobody reads while we poll
            cmd = _fedrun_cmd(j, Path(tmp) / "run")
            proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=err)
            peaks = watch_ranks(proc, "VmHWM")
        if proc.returncode:
            raise RuntimeError(f"fedrun failed: {log.read_text()[-2000:]}")
    return {
        "clients": clients,
        "server_MiB": peaks.get(0),
        "worker_MiB": max(v for k, v in peaks.items() if k),
    }


# --- driver -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fedrun.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default="A,B,C,D,E")
    ap.add_argument("--small", action="store_true", help="tiny sizes (for tests)")
    ap.add_argument("--json", default="bench.json", help="where to write the results")
    ap.add_argument(
        "--repeat", type=int, default=3,
        help="runs of each contender for A-C, interleaved; the table shows medians (default 3)",
    )  # fmt: skip
    ap.add_argument("--internal", help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    ap.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.internal:
        j = Job(**json.loads(args.job))
        res = internal_bare(j) if args.internal == "bare" else internal_ceiling(j, args.rank)
        print(json.dumps(res))
        return 0

    results: dict[str, dict] = {}
    lines: list[str] = []
    printed = 0
    for name in args.workloads.split(","):
        if name in WORKLOADS:
            res = workload(job(name, args.small), args.repeat)
            results[name] = res
            fed, e2e = res["fedrun"], res["end_to_end_s"]
            each = ", ".join(
                f"{k} {fed['round_s_by_launcher'][k]:.3f} s = {v * 100:.1f}%"
                for k, v in res["throughput_vs_ceiling_by_launcher"].items()
            )
            lines.append(
                f"{name}: end to end: torchrun {e2e['torchrun']:.2f} s, python -m fedrun "
                f"{e2e['python -m fedrun']:.2f} s, bare loop {e2e['bare']:.2f} s | round "
                f"{fed['round_s']:.3f} s vs ceiling {res['ceiling']['round_s']:.3f} s = "
                f"throughput {res['throughput_vs_ceiling'] * 100:.1f}% of ceiling ({each}) | "
                f"overhead {res['overhead_ms_per_client']:.3f} ms/client/round "
                f"(medians of {args.repeat})"
            )
        elif name == "D":
            sizes = (1_000_000,) if args.small else (10_000_000, 100_000_000)
            results["D"] = {str(n): aggregation(n) for n in sizes}
            for n, d in results["D"].items():
                lines.append(
                    f"D: {int(n) / 1e6:.0f}M floats, broadcast+reduce vs memcpy "
                    f"{d['memcpy_GBps']:.2f} GB/s: shared memory {d['shm_s']:.3f} s "
                    f"({d['shm_GBps']:.2f} GB/s, {d['shm_ratio'] * 100:.0f}%) | gloo "
                    f"{d['gloo_s']:.3f} s ({d['gloo_GBps']:.2f} GB/s, {d['gloo_ratio'] * 100:.0f}%)"
                )
        elif name == "E":
            counts = (20, 200) if args.small else (100, 10_000)
            e = [peak_rss(c, args.small) for c in counts]
            growth = (e[1]["server_MiB"] - e[0]["server_MiB"]) / e[0]["server_MiB"]
            results["E"] = {"runs": e, "server_growth": growth}
            lines.append(
                f"E: peak RSS server {e[0]['server_MiB']:.0f} -> {e[1]['server_MiB']:.0f} MiB "
                f"({growth * 100:+.1f}%), worker {e[0]['worker_MiB']:.0f} -> "
                f"{e[1]['worker_MiB']:.0f} MiB, {counts[0]} -> {counts[1]} clients"
            )
        print("\n".join(lines[printed:]), flush=True)
        printed = len(lines)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
