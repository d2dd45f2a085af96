"""The configuration: one dataclass tree, a TOML file, CLI flags on top, one validation.

Every field carries a docstring (the string literal under it); the CLI help is built from those.
Each field is one flag named after it (`num_clients` -> `--num-clients`), so names are unique
across sections. Precedence: defaults < `--config FILE.toml` < flags. Every rank parses the same
argv and runs the same checks before any collective, so a bad value fails identically everywhere.
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import difflib
import functools
import inspect
import math
import sys
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from fedrun.errors import ConfigError


@dataclass
class FedConfig:
    """The federation: how many clients, how many rounds, who takes part."""

    rounds: int = 100
    """Number of federated rounds (each: broadcast, local training, one reduce, aggregation)."""
    num_clients: int = 30
    """Number of virtual clients. For `synthetic` this is the number of devices."""
    clients_per_round: int | float = 10
    """Clients sampled per round, uniformly without replacement: a count (10), or a fraction of
    num_clients in (0, 1] written with a decimal point (0.1, 1.0)."""
    seed: int = 0
    """Seed of every random stream: model init, data generation, sampling, local shuffling."""


@dataclass
class DataConfig:
    """Which data, and how it is split across clients."""

    dataset: str = "synthetic"
    """Dataset: `synthetic` (FedProx Synthetic(alpha, beta), embedded), `digits` (scikit-learn's
    8x8 digits, offline), `mnist`, `fashion-mnist`, `cifar10` (torchvision files under data_root),
    `fake` (seeded random tensors, for benchmarks). Ignored when `task` is set."""
    partition: str = "natural"
    """How data is split over clients. synthetic: `natural` (one device per client) or `iid`
    (FedProx's Synthetic-IID). Pooled datasets (digits, mnist, fashion-mnist, cifar10): `iid`,
    `dirichlet` (label skew, see dirichlet_alpha) or `shards` (McMahan et al. 2017). fake: `iid`.
    `natural` on a pooled dataset means `iid`."""
    task: str = ""
    """Bring your own code: `pkg.module:obj` (or `pkg.module`), where obj provides model() and
    client_data(client_id, num_clients); see README. Replaces dataset, partition and model."""
    data_root: str = "~/data"
    """Where torchvision datasets live (cifar-10-batches-py/, MNIST/raw/, FashionMNIST/raw/)."""
    download: bool = False
    """Download missing torchvision datasets into data_root (needs a network)."""
    dirichlet_alpha: float = 0.5
    """Concentration of the `dirichlet` partition: smaller alpha, stronger label skew."""
    shards_per_client: int = 2
    """Shards per client in the `shards` partition (each shard: one run of sorted labels)."""
    min_samples: int = 2
    """Minimum samples per client in `iid`/`dirichlet`/`shards` partitions (dirichlet redraws
    up to 10 times, then tops the short clients up from the largest)."""
    client_test_fraction: float = 0.1
    """Fraction of each client's pooled-dataset shard kept as its local test split."""
    synthetic_alpha: float = 1.0
    """Synthetic(alpha, beta): spread of the per-device model (how different the devices' labels
    functions are)."""
    synthetic_beta: float = 1.0
    """Synthetic(alpha, beta): spread of the per-device feature means."""
    fake_shape: str = "3,32,32"
    """`fake`: shape of one input, comma-separated."""
    fake_classes: int = 10
    """`fake`: number of classes."""
    fake_samples: int = 500
    """`fake`: training samples per client (plus 10% for its local test split)."""
    fake_test_samples: int = 1000
    """`fake`: size of the server's central test set."""


@dataclass
class ModelConfig:
    """The model every client trains."""

    model: str = "logreg"
    """Model: `logreg` (multinomial logistic regression), `mlp` (one hidden ReLU layer), `cnn`
    (the Flower/PyTorch CIFAR tutorial's Net), `linear` (regression), `resnet18` (torchvision),
    or a factory `pkg.module:fn` (called with the keyword arguments among input_shape,
    num_outputs that it accepts)."""
    hidden: int = 64
    """Hidden width of `mlp`."""
    norm: Literal["batch", "group"] = "batch"
    """Normalisation layers of `resnet18`: `batch` (torchvision's) or `group` (GroupNorm with 2
    groups per layer, which has no running statistics to disagree across clients)."""


@dataclass
class TrainConfig:
    """Local training on each sampled client (SGD, fresh optimizer state per client)."""

    local_epochs: int = 1
    """Passes over the client's training data per round (ignored when local_steps > 0)."""
    local_steps: int = 0
    """If > 0: exactly this many minibatch steps per client per round, reshuffling at each pass."""
    lr: float = 0.05
    """SGD learning rate on the clients."""
    momentum: float = 0.0
    """SGD momentum on the clients (the buffer starts at zero for every client, every round)."""
    weight_decay: float = 0.0
    """SGD weight decay (L2) on the clients."""
    batch_size: int = 32
    """Minibatch size of local training."""
    drop_last: Literal["single", "all", "none"] = "single"
    """The last, incomplete minibatch of each pass over a client's data: `single` drops it when
    it holds one sample (BatchNorm cannot train on one; the pass reshuffles, so which sample
    sits out changes), `all` drops it whenever it is incomplete (PyTorch's drop_last=True),
    `none` keeps it (a BatchNorm model then fails on a client with n % batch_size == 1)."""


@dataclass
class EvalConfig:
    """Federated (clients' test splits) and central (server's held-out set) evaluation."""

    eval_every: int = 1
    """Evaluate every N rounds (and always after the last round); 0 evaluates only at the end."""
    eval_fraction: float = 1.0
    """Fraction of clients, in (0, 1], sampled per evaluation round for federated evaluation."""
    eval_batch_size: int = 1024
    """Minibatch size for evaluation."""


@dataclass
class StrategyConfig:
    """Server-side aggregation of the clients' updates."""

    strategy: str = "fedavg"
    """Aggregation strategy: `fedavg` (McMahan et al. 2017, weighted average of client models),
    or your own Strategy subclass as `pkg.module:Class` (see docs/architecture.md)."""
    weighting: Literal["examples", "uniform"] = "examples"
    """Client weight in the average: `examples` (n_k, number of training examples) or
    `uniform` (1 per client that holds data)."""
    server_lr: float = 1.0
    """Server step size on the averaged update; 1.0 is plain FedAvg."""
    max_update_norm: float = 0.0
    """A client update (w_k - w) with L2 norm above this is bad; 0 = no bound. Updates with
    NaN or Inf are always bad."""
    on_bad_update: Literal["fail", "skip"] = "fail"
    """What a bad client update does: `fail` (stop the run, naming the client) or `skip`
    (leave that client out of the round; counted in the metrics as `skipped`)."""
    server_momentum: float = 0.0
    """fedavgm: the server momentum beta (Hsu et al. 2019): m_t = beta m_(t-1) + Delta_t."""
    nesterov: bool = False
    """fedavgm: Nesterov's form, x <- x + eta (beta m_t + Delta_t) instead of x + eta m_t."""
    beta1: float = 0.9
    """fedadagrad, fedadam, fedyogi: first-moment decay (Reddi et al. 2021, Algorithm 2)."""
    beta2: float = 0.99
    """fedadam, fedyogi: second-moment decay."""
    tau: float = 1e-3
    """fedadagrad, fedadam, fedyogi: adaptivity tau, in the denominator sqrt(v_t) + tau and the
    initial v = tau^2 (the paper's recommended 1e-3)."""
    bias_correction: bool = False
    """fedadagrad, fedadam, fedyogi: divide m_t by 1 - beta1^t (and v_t by 1 - beta2^t, not for
    Adagrad), t = 1 in the first round (Kingma & Ba); off as in Reddi et al."""
    mu: float = 0.0
    """fedprox: the proximal weight mu (Li et al. 2020): each client minimises
    F_k(w) + mu/2 ||w - w_t||^2 over its trainable parameters; 0 is FedAvg, bit for bit."""
    stages: str = ""
    """Extra per-client update stages, comma-separated, run on each client's update after the
    built-in bad-update guard (their server halves run in reverse order on rank 0): registered
    names or your own Stage subclasses as `pkg.module:Class`. Empty = the guard alone."""


@dataclass
class RuntimeConfig:
    """Process group, devices, threads and outputs."""

    backend: Literal["auto", "gloo", "nccl"] = "auto"
    """Collective backend: `auto` (nccl when every local rank has a GPU, else gloo), `gloo`,
    `nccl`."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Device: `auto` (cuda:LOCAL_RANK when every local rank has a GPU, else cpu), `cpu`,
    `cuda`."""
    timeout: float = 1800.0
    """Collective timeout in seconds. The server waits inside the reduce while clients train, so
    this must exceed the slowest worker's share of a round."""
    join_timeout: float = 300.0
    """Seconds every rank waits at start-up for all ranks to join the process group. A rank that
    never arrives (stuck, or started on a node that cannot reach the others) is named and the
    job stops, instead of waiting out --timeout."""
    shared_memory: Literal["auto", "on", "off"] = "auto"
    """Move the model vector through shared memory instead of gloo's TCP loopback when every rank
    is on one host and on CPU: `auto` (vectors of 1M+ elements; gloo if the memory cannot be had),
    `on` (any size; set-up fails if it cannot), `off`. Control messages still go through gloo."""
    shm_dir: str = "/dev/shm"
    """The tmpfs directory for --shared-memory files; each is unlinked once every rank mapped it."""
    threads: int = 0
    """Torch threads per process; 0 = cores / processes on this node (never oversubscribe)."""
    deterministic: bool = False
    """Deterministic kernels on CUDA: torch.use_deterministic_algorithms(True), cuDNN's
    deterministic mode without autotuning, CUBLAS_WORKSPACE_CONFIG=:4096:8. Repeated runs then
    give the same bits on the same GPUs and software; it costs speed (cuDNN autotuning off,
    some ops slower) and an op with no deterministic kernel raises. CPU runs are deterministic
    without it. Like --threads, it lasts for the process (fedrun.run changes its caller's)."""
    malloc: Literal["retain", "system"] = "retain"
    """What each rank's C allocator (glibc) does with freed memory: `retain` keeps it for the
    next training step (blocks under 32 MiB from the heap, up to 1 GiB kept free) instead of
    returning it to the kernel and page-faulting it back (5-15% of a CPU worker's round);
    `system` keeps glibc's defaults. MALLOC_TRIM_THRESHOLD_ / MALLOC_MMAP_THRESHOLD_, their
    GLIBC_TUNABLES forms or a preloaded allocator win over it. It lasts for the process: fedrun.run
    changes its caller's allocator as it does its torch threads."""
    out: str = ""
    """Run directory (resolved config, metrics.jsonl, final_model.pt); empty = runs/<timestamp>."""
    overwrite: bool = False
    """Allow writing into an existing non-empty run directory."""
    checkpoint_every: int = 10
    """Write a checkpoint (global model, strategy state, round, RNG states) every N rounds and
    after the last; 0 = never. Needed for --resume and for surviving restarts."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep in OUT/checkpoints/."""
    resume: str = ""
    """Continue a run: a checkpoint file, or `auto` for the newest one in --out (a fresh start if
    there is none). A run restarted by torchrun (--max-restarts) resumes automatically."""
    quiet: bool = False
    """No per-round output on the console (the final summary still prints)."""
    plot_every: int = 0
    """Redraw OUT/metrics.png every N rounds as well as at the end; 0 = only at the end (each
    redraw holds the server for ~0.3 s while the workers wait, so use tens of rounds)."""
    tensorboard: bool = False
    """Also write TensorBoard scalars to OUT/tensorboard (needs the tensorboard package)."""


@dataclass
class Config:
    """The whole job: one TOML table per section, one flag per field."""

    fed: FedConfig = field(default_factory=FedConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def validate(self) -> Config:
        """Check every value; raise ConfigError naming the first bad field. Returns self."""
        _validate(self)
        return self

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)


# --- field metadata -------------------------------------------------------------------------


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass `cls`, parsed from its source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


@dataclass(frozen=True)
class FieldInfo:
    section: str
    name: str
    type: Any
    doc: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def label(self) -> str:
        return f"{self.section}.{self.name} ({self.flag})"


@functools.cache
def all_fields() -> dict[str, FieldInfo]:
    """Every leaf field by name (names are unique across sections)."""
    out: dict[str, FieldInfo] = {}
    for sec in dataclasses.fields(Config):
        cls = sec.default_factory  # type: ignore[misc]
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            if f.name in out:
                raise RuntimeError(f"config field name {f.name!r} is not unique")
            out[f.name] = FieldInfo(sec.name, f.name, hints[f.name], docs.get(f.name, ""))
    return out


def _is_int_or_float(tp: Any) -> bool:
    return isinstance(tp, types.UnionType) and set(typing.get_args(tp)) == {int, float}


def literal_choices(tp: Any) -> tuple[str, ...]:
    """The values of a `Literal[...]` field type; () for any other type."""
    return typing.get_args(tp) if typing.get_origin(tp) is Literal else ()


def _coerce(info: FieldInfo, value: Any) -> Any:
    """Check a TOML value's type against the field; ints are accepted for float fields."""
    tp = info.type
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, int | float) and not isinstance(value, bool))
        or ((tp is str or literal_choices(tp)) and isinstance(value, str))
        or (_is_int_or_float(tp) and isinstance(value, int | float) and not isinstance(value, bool))
    )
    if not ok:
        want = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
            tp, "a string" if literal_choices(tp) else "a number"
        )
        raise ConfigError(info.label, f"expected {want}, got {value!r}", "fix its type")
    return float(value) if tp is float else value


def _parse_count_or_fraction(text: str) -> int | float:
    """`10` -> 10 (a count); `0.1` or `1.0` -> a fraction."""
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None


# --- CLI and TOML ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError("command line", message, "see --help")


def build_parser(choices: typing.Mapping[str, typing.Sequence[str]] | None = None):
    """The CLI. Choices come from where they are declared: a field's `Literal[...]` type, or
    `choices` (field name -> names) for fields whose values live in a registry above this
    module (fedrun.checks.registry_choices()); --help lists them."""
    choices = dict(choices or {})
    p = _Parser(
        prog="torchrun --nproc_per_node=3 -m fedrun.main",
        description="Federated learning on torchrun: rank 0 is the server, ranks 1.. are client "
        "workers hosting the virtual clients.",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
    )
    p.add_argument("--config", metavar="FILE.toml", help="TOML file; flags override it.")
    groups = {}
    for info in all_fields().values():
        if info.section not in groups:
            groups[info.section] = p.add_argument_group(f"[{info.section}]")
        g = groups[info.section]
        doc = info.doc.replace("%", "%%")
        if info.type is bool:
            g.add_argument(info.flag, action=argparse.BooleanOptionalAction, help=doc)
            continue
        names = literal_choices(info.type) or tuple(choices.get(info.name, ()))
        metavar = "{" + ",".join(names) + "}" if names else info.name.upper()
        conv = _parse_count_or_fraction if _is_int_or_float(info.type) else info.type
        conv = str if literal_choices(info.type) else conv
        g.add_argument(info.flag, type=conv, metavar=metavar, help=doc)
    return p


def _suggest(word: str, choices: typing.Iterable[str]) -> str:
    near = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {near[0]}?" if near else ""


def load_toml(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a config file into {section: {field: value}}, checking names and types."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("--config", f"file not found: {path}", "check the path") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("--config", f"{path} is not valid TOML ({e})", "fix its syntax") from None
    fields = all_fields()
    sections = {f.name for f in dataclasses.fields(Config)}
    out: dict[str, dict[str, Any]] = {}
    for sec, table in raw.items():
        if sec not in sections or not isinstance(table, dict):
            hint = _suggest(sec, sections) or f"sections are {', '.join(sorted(sections))}"
            raise ConfigError(f"{path}", f"unknown section [{sec}]", hint)
        for key, value in table.items():
            info = fields.get(key)
            if info is None or info.section != sec:
                known = [n for n, i in fields.items() if i.section == sec]
                hint = _suggest(key, known) or f"[{sec}] takes {', '.join(known)}"
                raise ConfigError(f"{path}", f"unknown key {key!r} in [{sec}]", hint)
            out.setdefault(sec, {})[key] = _coerce(info, value)
    return out


def parse_args(argv: list[str] | None = None) -> Config:
    """Defaults < TOML (`--config`) < flags. Does not validate values; call `.validate()`."""
    parser = build_parser()
    ns, extra = parser.parse_known_args(argv)
    if extra:
        flags = [a for a in parser._option_string_actions if a.startswith("--")]
        bad = extra[0].split("=")[0]
        raise ConfigError(
            "command line", f"unknown flag {bad}", _suggest(bad, flags) or "see --help"
        )
    values: dict[str, dict[str, Any]] = {}
    given = vars(ns)
    if "config" in given:
        values = load_toml(given.pop("config"))
    fields = all_fields()
    for name, value in given.items():
        values.setdefault(fields[name].section, {})[name] = value
    return from_dict(values)


def from_dict(values: dict[str, dict[str, Any]]) -> Config:
    cfg = Config()
    for sec, table in values.items():
        for key, value in table.items():
            setattr(getattr(cfg, sec), key, value)
    return cfg


def to_toml(cfg: Config) -> str:
    import tomli_w

    return tomli_w.dumps(cfg.to_dict())


def job_toml(cfg: Config) -> str:
    """The config as a rerunnable job file: without this invocation's --out, --resume and
    --overwrite (a rerun from it starts fresh in a new run directory)."""
    job = copy.deepcopy(cfg)
    job.runtime.out, job.runtime.resume, job.runtime.overwrite = "", "", False
    return to_toml(job)


# --- validation -----------------------------------------------------------------------------


def _check(ok: bool, name: str, problem: str, fix: str) -> None:
    if not ok:
        raise ConfigError(all_fields()[name].label, problem, fix)


def check_choice(cfg_value: str, name: str, choices: typing.Iterable[str]) -> None:
    """Refuse a value outside `choices`, naming them and the nearest one."""
    choices = sorted(choices)
    if cfg_value not in choices:
        hint = _suggest(cfg_value, choices)
        fix = f"choose one of {', '.join(choices)}" + (f" ({hint})" if hint else "")
        raise ConfigError(all_fields()[name].label, f"unknown value {cfg_value!r}", fix)


def resolve_clients_per_round(value: int | float, num_clients: int) -> int:
    """A count stays; a fraction f gives round(f * num_clients), at least 1."""
    if isinstance(value, float):
        return max(1, min(num_clients, int(value * num_clients + 0.5)))
    return int(value)


def _validate(cfg: Config) -> None:
    """Per-field value checks. Names that live in registries (dataset, partition, model,
    strategy, stages, task) are checked one layer up, in fedrun.checks."""
    f, d, m, t, e, s, r = (
        cfg.fed,
        cfg.data,
        cfg.model,
        cfg.train,
        cfg.eval,
        cfg.strategy,
        cfg.runtime,
    )
    for name, info in all_fields().items():
        value = getattr(getattr(cfg, info.section), name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(info.label, f"must be a finite number, got {value}", "pass a number")
        if literal_choices(info.type):
            check_choice(value, name, literal_choices(info.type))
    _check(f.rounds >= 1, "rounds", f"must be >= 1, got {f.rounds}", "pass a positive integer")
    # the round number travels in the broadcast header, in the vector's dtype (>= float32)
    _check(f.rounds <= 2**24, "rounds", f"must be <= 2**24, got {f.rounds}", "run fewer rounds")
    _check(
        f.num_clients >= 1,
        "num_clients",
        f"must be >= 1, got {f.num_clients}",
        "pass a positive integer",
    )
    cpr = f.clients_per_round
    if isinstance(cpr, float):
        _check(
            0.0 < cpr <= 1.0,
            "clients_per_round",
            f"fraction {cpr} is outside (0, 1]",
            "give a fraction in (0, 1] or an integer count",
        )
    else:
        _check(
            1 <= cpr <= f.num_clients,
            "clients_per_round",
            f"{cpr} is not between 1 and num_clients={f.num_clients}",
            "lower it or raise --num-clients",
        )
    _check(
        d.dirichlet_alpha > 0,
        "dirichlet_alpha",
        f"must be > 0, got {d.dirichlet_alpha}",
        "e.g. 0.5 (smaller: more skew)",
    )
    _check(d.shards_per_client >= 1, "shards_per_client", "must be >= 1", "e.g. 2")
    _check(d.min_samples >= 0, "min_samples", f"must be >= 0, got {d.min_samples}", "e.g. 2")
    _check(
        0 <= d.client_test_fraction < 1,
        "client_test_fraction",
        f"must be in [0, 1), got {d.client_test_fraction}",
        "e.g. 0.1",
    )
    _check(d.synthetic_alpha >= 0, "synthetic_alpha", "must be >= 0", "pass a non-negative number")
    _check(d.synthetic_beta >= 0, "synthetic_beta", "must be >= 0", "pass a non-negative number")
    try:
        shape = [int(v) for v in d.fake_shape.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        shape = []
    _check(
        bool(shape) and min(shape) >= 1,
        "fake_shape",
        f"cannot read {d.fake_shape!r}",
        'give positive integers like "3,32,32"',
    )
    _check(d.fake_classes >= 2, "fake_classes", "must be >= 2", "e.g. 10")
    _check(d.fake_samples >= 0, "fake_samples", "must be >= 0", "e.g. 500")
    _check(d.fake_test_samples >= 1, "fake_test_samples", "must be >= 1", "e.g. 1000")
    _check(m.hidden >= 1, "hidden", f"must be >= 1, got {m.hidden}", "pass a positive integer")
    _check(
        t.local_epochs >= 1 or t.local_steps >= 1,
        "local_epochs",
        "must be >= 1",
        "or set --local-steps",
    )
    _check(
        t.local_steps >= 0,
        "local_steps",
        f"must be >= 0, got {t.local_steps}",
        "0 means: use epochs",
    )
    _check(t.lr > 0, "lr", f"must be > 0, got {t.lr}", "pass a positive learning rate")
    _check(0 <= t.momentum < 1, "momentum", f"must be in [0, 1), got {t.momentum}", "e.g. 0.9")
    _check(t.weight_decay >= 0, "weight_decay", f"must be >= 0, got {t.weight_decay}", "e.g. 1e-4")
    _check(t.batch_size >= 1, "batch_size", f"must be >= 1, got {t.batch_size}", "e.g. 32")
    _check(
        e.eval_every >= 0, "eval_every", f"must be >= 0, got {e.eval_every}", "0 = only at the end"
    )
    _check(
        0 < e.eval_fraction <= 1,
        "eval_fraction",
        f"must be in (0, 1], got {e.eval_fraction}",
        "e.g. 1.0",
    )
    _check(e.eval_batch_size >= 1, "eval_batch_size", "must be >= 1", "e.g. 1024")
    _check(s.server_lr > 0, "server_lr", f"must be > 0, got {s.server_lr}", "1.0 is plain FedAvg")
    _check(s.max_update_norm >= 0, "max_update_norm", "must be >= 0", "0 = no bound")
    for name in ("server_momentum", "beta1", "beta2"):
        value = getattr(s, name)
        _check(0 <= value < 1, name, f"must be in [0, 1), got {value}", "e.g. 0.9")
    _check(s.tau > 0, "tau", f"must be > 0, got {s.tau}", "e.g. 1e-3")
    _check(s.mu >= 0, "mu", f"must be >= 0, got {s.mu}", "e.g. 0.01 (FedProx's paper: 0.001 to 1)")
    _check(r.timeout >= 1, "timeout", f"must be >= 1 second, got {r.timeout}", "e.g. 1800")
    _check(
        r.join_timeout >= 1,
        "join_timeout",
        f"must be >= 1 second, got {r.join_timeout}",
        "e.g. 300",
    )
    _check(r.threads >= 0, "threads", f"must be >= 0, got {r.threads}", "0 = automatic")
    _check(r.checkpoint_every >= 0, "checkpoint_every", "must be >= 0", "0 = never")
    _check(r.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1", "e.g. 2")
    _check(r.plot_every >= 0, "plot_every", "must be >= 0", "0 = only at the end")


def result_digest(cfg: Config) -> int:
    """A 63-bit hash of everything that determines the model a round produces: fed (except the
    number of rounds, so a run may be extended), data, model, train and strategy. A checkpoint
    is only resumed under the same digest."""
    import tomli_w

    from fedrun.seeding import digest63

    d = cfg.to_dict()
    d["fed"].pop("rounds")
    d["data"].pop("data_root")  # where the files live does not change them
    d["data"].pop("download")
    kept = {k: d[k] for k in ("fed", "data", "model", "train", "strategy")}
    return digest63(tomli_w.dumps(kept))
