"""Soak: many clients, many rounds, flat memory. Prints the RSS of every rank at two rounds.

    python bench/soak.py                       # 10,000 clients, 1,000 rounds (issue #5)
    python bench/soak.py --clients 200 --rounds 60 --early 10   # a quick look

Runs fedrun through torchrun (logistic regression on `fake` data: 20 features, 20 samples per
client, 100 clients per round) and samples /proc of every rank when metrics.jsonl reaches the
early round and the last round.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fedrun.procs import memory_by_rank


def rounds_done(metrics: Path) -> int:
    try:
        lines = metrics.read_text().splitlines()
    except OSError:
        return 0
    return json.loads(lines[-1])["round"] if lines else 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--early", type=int, default=50)
    ap.add_argument("--per-round", type=int, default=100)
    ap.add_argument("--nproc", type=int, default=3)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="fedrun-soak-")) / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={args.nproc}", "-m", "fedrun.main", "--dataset", "fake",
        "--fake-shape", "20", "--fake-samples", "20", "--fake-test-samples", "200",
        "--model", "logreg", "--num-clients", str(args.clients),
        "--clients-per-round", str(args.per_round), "--rounds", str(args.rounds),
        "--eval-every", "50", "--eval-fraction", "0.01", "--checkpoint-every", "100",
        "--plot-every", "0", "--quiet", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    samples: dict[str, dict[int, float]] = {}
    start = time.perf_counter()
    while proc.poll() is None:
        done = rounds_done(out / "metrics.jsonl")
        if "early" not in samples and done >= args.early:
            samples["early"] = memory_by_rank(proc.pid)
        if done >= args.rounds - 1 and "late" not in samples:
            samples["late"] = memory_by_rank(proc.pid)
        time.sleep(0.05)
    output = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        print(output)
        return proc.returncode
    seconds = time.perf_counter() - start
    print(
        f"soak: {args.clients} clients, {args.rounds} rounds, {args.per_round} per round, "
        f"{args.nproc} ranks, {seconds:.1f} s"
    )
    early, late = f"RSS round {args.early}", f"RSS round {args.rounds - 1}"
    print(f"{'rank':>4} | {early:>14} | {late:>14} | growth")
    worst = 0.0
    for rank in sorted(samples.get("early", {})):
        a, b = samples["early"][rank], samples.get("late", {}).get(rank, float("nan"))
        growth = (b - a) / a * 100
        worst = max(worst, growth)
        print(f"{rank:>4} | {a:>11.1f} MiB | {b:>11.1f} MiB | {growth:+.2f}%")
    print(json.dumps({"samples": samples, "seconds": seconds, "worst_growth_pct": worst}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
