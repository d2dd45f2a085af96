#!/usr/bin/env bash
# One machine: 1 server rank + (NPROC - 1) client-worker ranks. Extra arguments go to fedrun.
#   launch/local.sh --rounds 50 --out runs/exp1
#   NPROC=5 MAX_RESTARTS=3 launch/local.sh --checkpoint-every 5
# With GPUs, use one process per GPU (NCCL needs one GPU per rank); fedrun picks cuda:LOCAL_RANK.
set -euo pipefail

NPROC=${NPROC:-3}
MAX_RESTARTS=${MAX_RESTARTS:-0}

exec torchrun --standalone --nproc-per-node "$NPROC" --max-restarts "$MAX_RESTARTS" \
    -m fedrun.main "$@"
