"""The only module that talks to torch.distributed: launch environment, process group, and the
four collectives of the round protocol (broadcast, reduce-sum, all-gather of ints, teardown), and
the shared-memory path for the model vector on one host (`Comm.share_vectors`)."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from fedrun import shm
from fedrun.config import RuntimeConfig
from fedrun.errors import Aborted, ConfigError, JoinTimeout, PeerLost
from fedrun.faults import maybe_crash

RUN_HINT = "launch with: torchrun --nproc_per_node=3 -m fedrun.main [flags]"
SHM_MIN_NUMEL = 1 << 20  # below ~4 MB gloo's loopback costs about what the doorbells do
JOIN_POLL_FAST, JOIN_FAST_FOR, JOIN_POLL_SLOW = 0.005, 5.0, 0.1  # seconds: see wait_for_all_ranks
JOIN_POLLS_PER_S = 2000  # all ranks' join polls together at most, for the store's sake


def free_port() -> int:
    """A TCP port on 127.0.0.1 that the OS just reported free (for one-node launches)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class LaunchEnv:
    """What torchrun tells each process about its place in the job."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str
    master_port: int
    restart_count: int

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> LaunchEnv:
        env = os.environ if environ is None else environ
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in env]
        if missing:
            raise ConfigError("launch", "not started by torchrun (no " + missing[0] + ")", RUN_HINT)
        world = int(env["WORLD_SIZE"])
        if world < 2:
            raise ConfigError(
                "launch",
                "world size 1: fedrun needs a server rank and at least one client worker",
                RUN_HINT,
            )
        return cls(
            rank=int(env["RANK"]),
            world_size=world,
            local_rank=int(env.get("LOCAL_RANK", env["RANK"])),
            local_world_size=int(env.get("LOCAL_WORLD_SIZE", world)),
            master_addr=env["MASTER_ADDR"],
            master_port=int(env["MASTER_PORT"]),
            restart_count=int(env.get("TORCHELASTIC_RESTART_COUNT", "0")),
        )


def _isolated() -> bool:
    """This process was given exactly one GPU through its own CUDA_VISIBLE_DEVICES, as some
    schedulers do per rank (SLURM's --gpus-per-task, Kubernetes device plugins)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return visible is not None and len([d for d in visible.split(",") if d.strip()]) == 1


def pick_device(cfg: RuntimeConfig, env: LaunchEnv) -> torch.device:
    """cuda:LOCAL_RANK when every local rank gets its own GPU (NCCL needs one GPU per rank);
    cuda:0 when each rank sees only its own GPU (per-rank CUDA_VISIBLE_DEVICES)."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    per_rank = gpus == 1 and env.local_world_size > 1 and _isolated()
    if cfg.device == "cpu":
        return torch.device("cpu")
    if cfg.device == "auto" and gpus < env.local_world_size and not per_rank:
        if gpus and env.local_rank == 0:
            print(
                f"fedrun: {gpus} GPU(s) for {env.local_world_size} ranks on this node: running "
                "on CPU (each rank needs its own GPU; --device cuda refuses instead)",
                flush=True,
            )
        return torch.device("cpu")
    if gpus == 0:
        raise ConfigError(
            "runtime.device (--device)", "cuda requested but no GPU is visible", "use --device cpu"
        )
    if per_rank:  # the scheduler's promise: a GPU of this rank's own (NCCL refuses a shared one)
        return torch.device("cuda", 0)
    if gpus < env.local_world_size:
        raise ConfigError(
            "runtime.device (--device)",
            f"{env.local_world_size} ranks on this node, {gpus} GPU(s); each rank needs one",
            "lower --nproc_per_node or use --device cpu",
        )
    return torch.device("cuda", env.local_rank)


def pick_backend(cfg: RuntimeConfig, device: torch.device) -> str:
    if cfg.backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if cfg.backend == "nccl" and (device.type != "cuda" or not dist.is_nccl_available()):
        raise ConfigError(
            "runtime.backend (--backend)",
            "nccl needs a GPU per rank (device is " + device.type + ")",
            "use --backend gloo on CPU",
        )
    return cfg.backend


def attempt_prefix(env: LaunchEnv) -> str:
    return f"fedrun/attempt{env.restart_count}"


def wait_for_all_ranks(store: dist.Store, env: LaunchEnv, seconds: float) -> None:
    """Set this rank's `joined/<rank>` key, then wait (this thread, any backend) until every
    rank has set its own, for at most `seconds`. A rank that is alive but stuck (so its launcher
    does not notice) is thus named, instead of leaving the others in the process group's
    set-up for --timeout. Raises JoinTimeout naming the missing ranks."""
    maybe_crash("join", env.rank, 0)
    store.set(f"joined/{env.rank}", "1")
    store.add("joined", 1)
    # Polled (one counter read; a timed-out store.wait would add C++ socket warnings to the
    # one-line error): every JOIN_POLL_FAST s at first, since ranks of one node that import
    # torch together arrive within ~0.1 s of each other (a backoff to 0.1 s cost every start
    # ~0.08 s after the last rank had joined), then every JOIN_POLL_SLOW s (other nodes). A
    # large job polls less often at first, so that the one store serving it is not flooded.
    fast = min(JOIN_POLL_SLOW, max(JOIN_POLL_FAST, env.world_size / JOIN_POLLS_PER_S))
    start = time.monotonic()
    while store.add("joined", 0) < env.world_size:
        waited = time.monotonic() - start
        if waited > seconds:
            break
        time.sleep(fast if waited < JOIN_FAST_FOR else JOIN_POLL_SLOW)
    else:
        return
    missing = [r for r in range(env.world_size) if not store.check([f"joined/{r}"])]
    if not missing:  # the last one arrived just then
        return
    present = [r for r in range(env.world_size) if r not in missing]
    raise JoinTimeout(
        f"rank {min(present)}: start-up: rank(s) {missing} did not join within {seconds:g} s "
        "(runtime.join_timeout, --join-timeout); such a rank is stuck or cannot reach "
        f"{env.master_addr}:{env.master_port}: see its output",
        reporter=env.rank == min(present),
    )


class Comm:
    """A process group plus the buffers' device. Collectives are blocking and SUM-only."""

    def __init__(self, env: LaunchEnv, cfg: RuntimeConfig) -> None:
        self.env = env
        self.rank, self.world_size = env.rank, env.world_size
        self.device = pick_device(cfg, env)
        self.backend = pick_backend(cfg, self.device)
        # Collective buffers live where the backend wants them: NCCL on the GPU, gloo on the CPU.
        self.buffer_device = self.device if self.backend == "nccl" else torch.device("cpu")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        timeout = timedelta(seconds=cfg.timeout)
        # The agent (torchrun) hosts the store; a restarted group gets a fresh key prefix, since a
        # plain re-init on the same store reconnects to the previous attempt's stale peers.
        agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        store = dist.TCPStore(
            env.master_addr,
            env.master_port,
            env.world_size,
            is_master=env.rank == 0 and not agent_store,
            timeout=timeout,
        )
        self.store = store  # outlives restarts when torchrun's agent hosts it
        prefixed = dist.PrefixStore(attempt_prefix(env), store)
        self.attempt_store = prefixed
        wait_for_all_ranks(prefixed, env, cfg.join_timeout)
        dist.init_process_group(
            self.backend, store=prefixed, rank=env.rank, world_size=env.world_size, timeout=timeout
        )
        self.cfg = cfg
        self.shared: SharedVectors | None = None
        if env.rank == 0:  # names this attempt's shared-memory files, should they be used
            self.shm_job = self.first_attempt_value("shm-job", uuid.uuid4().hex[:12])
            prefixed.set("shm-token", f"{self.shm_job}-a{env.restart_count}")

    def first_attempt_value(self, key: str, value: str) -> str:
        """`value` on the first attempt of a job, remembered in the launcher's store, so that a
        group restarted by torchrun gets the first attempt's value back (e.g. its run dir)."""
        key = "fedrun/" + key
        if self.env.restart_count > 0 and self.store.check([key]):
            return self.store.get(key).decode()
        self.store.set(key, value)
        return value

    def put(self, key: str, value: str) -> None:
        """A start-up fact for the other ranks of this attempt (rank 0: where the run lives)."""
        self.attempt_store.set("facts/" + key, value)

    def fetch(self, key: str) -> str:
        """A fact another rank `put` (waits for it up to --timeout)."""
        return self.attempt_store.get("facts/" + key).decode()

    def mark(self, step: str) -> None:
        """A worker records the step it reached ("train 3") before entering its collective, so a
        server whose collective times out can name the rank that never arrived."""
        self.attempt_store.set(f"progress/{self.rank}", step)

    def laggards(self, step: str) -> list[int]:
        """Worker ranks whose last mark is not `step` (server side, after a failed collective).
        Read from the store rather than by a monitored barrier: the workers that did arrive are
        inside the next collective by then, and a barrier would cross it."""
        late = []
        for r in range(1, self.world_size):
            key = f"progress/{r}"
            if not self.attempt_store.check([key]) or self.attempt_store.get(key).decode() != step:
                late.append(r)
        return late

    @contextlib.contextmanager
    def _guard(self, op: str):
        """A collective that fails because a peer died or timed out becomes one line."""
        try:
            yield
        except (RuntimeError, dist.DistError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            first = first.split(". This is typically")[0]  # gloo's boilerplate
            raise PeerLost(
                f"rank {self.rank}: {op} failed, a peer is gone or stuck ({first})"
            ) from None

    def broadcast(self, t: torch.Tensor) -> None:
        """In place: rank 0's tensor everywhere. The shared broadcast vector is the same memory
        on every rank already: a one-element broadcast only tells the workers it is written."""
        with self._guard("broadcast"):
            if self.shared is not None and t is self.shared.bcast:
                dist.broadcast(self.shared.doorbell, src=0)
            else:
                dist.broadcast(t, src=0)

    def reduce_sum(self, t: torch.Tensor) -> None:
        """In place: the elementwise sum over all ranks lands on rank 0 (others: unspecified).
        The shared reduce vector moves no bytes: each worker's slot already holds its sum, and
        rank 0 adds the slots in rank order. That is only valid once every worker has written its
        slot, so the caller (the exchange) reduces it after a collective the workers enter only
        when done writing: the round's float64 statistics reduce."""
        with self._guard("reduce"):
            sh = self.shared
            if sh is not None and t is sh.reduce_buf:
                if self.rank == 0:
                    sh.sum_slots(t)
            else:
                dist.reduce(t, dst=0, op=dist.ReduceOp.SUM)

    def share_vectors(
        self, bcast: torch.Tensor, reduce_buf: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Collective, once after the handshake: the (broadcast, reduce) buffers to use from now
        on. Shared-memory ones when --shared-memory allows (one host, gloo on CPU) and every
        rank could map its file: the broadcast buffer (rank 0's contents copied) is one file
        mapped by all; each worker's reduce buffer is its own slot file, which rank 0 maps too
        and sums; rank 0 keeps a private one. Else the arguments."""
        numel = reduce_buf.numel()
        mode, why_not = self.cfg.shared_memory, ""
        if self.backend != "gloo" or bcast.device.type != "cpu":
            why_not = f"the buffers are on {bcast.device.type} with {self.backend}"
        elif self.env.local_world_size != self.world_size:
            why_not = "the ranks are on more than one host"
        if mode == "off" or (mode == "auto" and (why_not or numel < SHM_MIN_NUMEL)):
            return bcast, reduce_buf
        field = "runtime.shared_memory (--shared-memory)"
        if why_not:
            raise ConfigError(
                field, f"on needs one host and gloo on CPU, but {why_not}", "use auto"
            )
        token = self.attempt_store.get("shm-token").decode()
        directory = Path(self.cfg.shm_dir)
        if self.rank == 0 and self.env.restart_count > 0 and directory.is_dir():
            shm.remove_earlier_attempts(directory, self.shm_job, self.env.restart_count)
        sh = SharedVectors(directory, token, self, bcast, reduce_buf)
        # Each step's outcome goes through an all-gather, which every rank reaches whatever
        # happened to it, so a rank that fails tells the others instead of leaving them in a
        # barrier; the second all-gather is also the barrier after which the names can go.
        for step, action in (("make their file", sh.make), ("map the others'", sh.connect)):
            problem = action()
            ok = self.all_gather_ints([0 if problem else 1])
            failed = [r for r, row in enumerate(ok) if not row[0]]
            if failed:
                sh.release()
                what = f"rank(s) {failed} could not {step} in {self.cfg.shm_dir}"
                if problem and self.rank == 0:
                    what += f" ({problem})"
                if mode == "on":
                    if self.rank:  # one line from rank 0 is enough
                        raise Aborted("shared memory unavailable (rank 0 shows the cause)")
                    raise ConfigError(field, what, "free space in --shm-dir or use auto")
                if self.rank == 0:
                    print(f"fedrun: shared memory unavailable, {what}; using gloo", flush=True)
                return bcast, reduce_buf
            maybe_crash("shm", self.rank, 0)
        sh.release()
        self.shared = sh
        return sh.bcast, sh.reduce_buf

    def all_gather_ints(self, values: list[int]) -> list[list[int]]:
        """Every rank's list of int64s, on every rank (used once, at start-up)."""
        t = torch.tensor(values, dtype=torch.int64, device=self.buffer_device)
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        with self._guard("start-up all-gather"):
            dist.all_gather(out, t)
        return [o.tolist() for o in out]

    def close(self, in_step: bool = True) -> None:
        """Tear down. `in_step`: every rank is known to reach this point (clean end, or an error
        the protocol already delivered to all); then a barrier first, because destroying the
        gloo group while a peer still sends its last bytes aborted ~1 in 4 runs at exit
        ("terminate called without an active exception"). Otherwise leave it to process exit,
        since a barrier could wait on a rank that is gone."""
        if self.shared is not None:
            self.shared.release()
        if dist.is_initialized() and in_step:
            dist.barrier()
            dist.destroy_process_group()


class SharedVectors:
    """The shared-memory files of one attempt: `<dir>/fedrun-<token>-bcast` (made by rank 0)
    and `...-slot<r>` (made by worker r). Each rank makes its own file in `make()` and maps the
    others' in `connect()`; rank 0 sums the slots."""

    def __init__(
        self,
        directory: Path,
        token: str,
        comm: Comm,
        bcast: torch.Tensor,
        reduce_buf: torch.Tensor,
    ) -> None:
        self.rank, self.world_size = comm.rank, comm.world_size
        self.bcast, self.reduce_buf = bcast, reduce_buf  # rank 0 keeps its own reduce buffer
        self.dtype, self.reduce_dtype = bcast.dtype, reduce_buf.dtype
        self.reduce_numel = reduce_buf.numel()
        self.paths = {r: directory / f"fedrun-{token}-slot{r}" for r in range(1, self.world_size)}
        self.paths[0] = directory / f"fedrun-{token}-bcast"
        self.made: list[Path] = []
        self.doorbell = torch.zeros(1)
        self.slots: list[torch.Tensor] = []

    def make(self) -> str:
        """Make and map this rank's own file; a problem is returned, not raised, so that every
        rank learns of it in the all-gather that follows."""
        try:
            if self.rank == 0:
                contents = self.bcast
                self.bcast = self._make(0, contents.numel())
                self.bcast.copy_(contents)
            else:
                self.reduce_buf = self._make(self.rank, self.reduce_numel)
        except OSError as e:
            return e.strerror or str(e)
        return ""

    def _make(self, r: int, numel: int) -> torch.Tensor:
        t = shm.create(self.paths[r], numel, self.reduce_dtype if r else self.dtype)
        self.made.append(self.paths[r])
        return t

    def connect(self) -> str:
        """Map the others' files; a problem is returned, not raised (as in `make`)."""
        try:
            if self.rank == 0:
                self.slots = [
                    shm.attach(self.paths[r], self.reduce_numel, self.reduce_dtype)
                    for r in range(1, self.world_size)
                ]
            else:
                self.bcast = shm.attach(self.paths[0], self.bcast.numel(), self.dtype)
        except OSError as e:
            return e.strerror or str(e)
        return ""

    def release(self) -> None:
        """Unlink every name this rank made (rank 0: all of them, once all are mapped)."""
        for p in self.paths.values() if self.rank == 0 and self.slots else self.made:
            shm.unlink(p)
        self.made = []

    def sum_slots(self, out: torch.Tensor) -> None:
        if len(self.slots) == 1:
            out.copy_(self.slots[0])
            return
        torch.add(self.slots[0], self.slots[1], out=out)
        for s in self.slots[2:]:
            out.add_(s)
