"""The learning problem as the roles see it: data source, model, loss, train and eval loops.

Built either from the built-in registries (--dataset, --partition, --model) or from the user's
own code (--task pkg.module:obj). The user object (a module, an instance, a namespace, or a class,
instantiated without arguments) provides:

    model() -> nn.Module                                         required
    client_data(client_id, num_clients) -> (train, test | None)  required; torch Datasets
    server_data() -> Dataset                                     optional: central evaluation
    loss = "cross_entropy" | "mse" | callable(out, y)            optional, default cross_entropy
    train(model, loader, epochs, device)                         optional: replaces local SGD
    evaluate(model, loader, device) -> (loss, accuracy)          optional: replaces evaluation;
        loss = the MEAN loss per example over the loader's data, accuracy in [0, 1]
    configure(config)                                            optional: sees the fedrun Config

TensorDatasets of (inputs, targets) take the in-memory fast path; any other Dataset is batched
by a DataLoader. A custom `evaluate` returns one client's (mean loss per example, accuracy),
which fedrun averages over clients weighted by their test examples, as Flower does (a sum of
batch losses would be weighted as if it were a mean).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parameter import is_lazy
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import TensorDataset

from fedrun.config import Config, all_fields
from fedrun.data.types import ClientData, DatasetInfo, Split
from fedrun.errors import ConfigError
from fedrun.imports import import_object
from fedrun.models import build_model, seeded
from fedrun.registry import DATASETS
from fedrun.seeding import call_seeded, derive_seed
from fedrun.train import LossFn, evaluate, local_train, loss_for, make_loader, num_batches

_TASK = "data.task (--task)"


def _is_lazy(module: nn.Module) -> bool:
    return any(is_lazy(t) for t in (*module.parameters(False), *module.buffers(False)))


def _on(data: Split | TorchDataset | None, device: torch.device) -> Split | TorchDataset:
    """Tensor data goes to the device once; other datasets stay where they are."""
    if data is None:
        return Split(torch.zeros(0), torch.zeros(0, dtype=torch.long)).to(device)
    if isinstance(data, TensorDataset) and len(data.tensors) == 2:
        data = Split(*data.tensors)
    return data.to(device) if isinstance(data, Split) else data


@dataclass
class Task:
    name: str
    kind: str  # "classification", "regression" or "custom" (a user loss: loss only)
    info: DatasetInfo
    loss_fn: LossFn
    _model: Callable[[], nn.Module]
    _client_data: Callable[[list[int]], dict[int, ClientData]]
    _central: Callable[[], Any]
    train_fn: Callable[..., Any] | None = None
    eval_fn: Callable[..., Any] | None = None
    user: bool = False  # built from --task

    @property
    def num_classes(self) -> int:
        """Classes counted in the partition report (0: only example counts are reported)."""
        return self.info.num_outputs if self.kind == "classification" else 0

    def check_model(
        self, model: nn.Module, data, where: str, cfg: Config, train: bool = False
    ) -> None:
        """One forward pass and loss on a few samples of `data` (and with `train`, a training-
        mode forward and backward on a copy of the model, so BatchNorm and friends are tried as
        local training runs them): a model that does not fit the data fails at set-up, in one
        line, instead of rounds later."""
        if data is None or len(data) == 0:
            return
        xb, yb = next(iter(make_loader(data, 8, None)))
        device = next(model.parameters(), torch.empty(0)).device
        mode = "evaluation"
        try:
            with torch.no_grad():
                out = model.eval()(xb.to(device))  # eval: no BatchNorm statistics move
                self.loss_fn(out, yb.to(device))
            if train and len(yb) >= 2:  # drop_last never trains on one sample
                mode = "training"
                trial = copy.deepcopy(model).train()
                out = trial(xb.to(device))
                self.loss_fn(out, yb.to(device)).backward()
        except Exception as e:  # noqa: BLE001 - any failure here means a mismatch
            field = "data.task (--task)" if cfg.data.task else "model.model (--model)"
            shape = tuple(out.shape) if "out" in locals() else "none"
            raise ConfigError(
                field,
                f"the model's output (shape {shape}) does not fit {where}'s inputs "
                f"{tuple(xb.shape)} and labels {tuple(yb.shape)} in {mode} mode "
                f"({type(e).__name__}: {e})",
                "make the model's input and output match the data and the loss",
            ) from None

    def model(self, device: torch.device) -> nn.Module:
        model = self._model()
        lazy = sorted({type(m).__name__ for m in model.modules() if _is_lazy(m)})
        if lazy:  # their parameters would appear at the first forward, differently per rank
            field = "data.task (--task)" if self.user else "model.model (--model)"
            raise ConfigError(
                field,
                f"the model has uninitialised lazy modules ({', '.join(lazy)})",
                "give their input sizes (nn.Linear(in_features, out) for nn.LazyLinear) so "
                "every rank builds the same parameters before round 1",
            )
        return model.to(device)

    def client_data(self, ids: list[int], device: torch.device) -> dict[int, ClientData]:
        raw = self._client_data(ids)
        return {c: ClientData(_on(d.train, device), _on(d.test, device)) for c, d in raw.items()}

    def central_data(self, device: torch.device) -> Split | TorchDataset | None:
        data = self._central()
        return None if data is None else _on(data, device)

    def train(
        self, model, optimizer, data, cfg: Config, gen, device, hook=None
    ) -> tuple[float, int]:
        """(loss sum, samples seen); a custom train that returns no loss gives (0, 0). `hook`:
        the strategy's gradient hook (fedrun.checks refuses it with a custom train)."""
        if self.train_fn is None:
            return local_train(model, optimizer, data, cfg.train, self.loss_fn, gen, device, hook)
        loader = make_loader(data, cfg.train.batch_size, gen, cfg.train.drop_last)
        model.train()  # as a fresh model would be; evaluation left it in eval mode
        result = self.train_fn(model, loader, cfg.train.local_epochs, device)
        t = cfg.train
        seen = min(len(data), num_batches(len(data), t.batch_size, t.drop_last) * t.batch_size)
        seen *= t.local_epochs
        if isinstance(result, numbers.Real) and math.isfinite(result):
            return float(result) * seen, seen
        return 0.0, 0

    def evaluate(self, model, data, batch_size: int, device) -> tuple[float, float, int]:
        """(loss sum, correct, examples) for weighted averaging."""
        if len(data) == 0:
            return 0.0, 0.0, 0
        if self.eval_fn is None:
            return evaluate(
                model, data, self.loss_fn, self.kind == "classification", batch_size, device
            )
        loss, acc = self.eval_fn(model, make_loader(data, batch_size, None), device)
        n = len(data)
        return float(loss) * n, float(acc) * n, n


def load_task(cfg: Config) -> Task:
    if cfg.data.task:
        return _user_task(cfg)
    ds = DATASETS.load(cfg.data.dataset)
    info = ds.info(cfg)
    return Task(
        name=cfg.data.dataset,
        kind=info.task,
        info=info,
        loss_fn=loss_for(info.task),
        _model=lambda: build_model(cfg, info),
        _client_data=lambda ids: ds.client_data(cfg, ids),
        _central=lambda: ds.central_data(cfg),
    )


def task_object(path: str, instantiate: bool = True) -> Any:
    """Import the user's task object (instantiating a class unless `instantiate` is False:
    fedrun.checks only looks, so each rank builds the object once, in load_task) and check
    what fedrun calls."""
    obj = import_object(path, _TASK)
    if isinstance(obj, type) and instantiate:
        obj = obj()
    for required in ("model", "client_data"):
        if not callable(getattr(obj, required, None)):
            raise ConfigError(
                _TASK, f"{path} has no {required}()", "see README: Bring your own code"
            )
    return obj


def _first_change(before: Config, after: Config) -> str:
    for name, info in all_fields().items():
        old, new = (getattr(getattr(c, info.section), name) for c in (before, after))
        if old != new:
            return f"{info.label} from {old!r} to {new!r}"
    return ""


def _user_task(cfg: Config) -> Task:
    obj = task_object(cfg.data.task)
    if callable(getattr(obj, "configure", None)):
        before = copy.deepcopy(cfg)
        obj.configure(cfg)
        changed = _first_change(before, cfg)
        if changed:  # every rank agreed on the config before this call: it must stay that one
            raise ConfigError(
                _TASK,
                f"configure() changed {changed}",
                "set it with its flag or in the TOML file; configure() may read the config",
            )
    loss = getattr(obj, "loss", "cross_entropy")
    if callable(loss):
        kind, loss_fn = "custom", loss
    elif loss in ("cross_entropy", "mse"):
        kind = "classification" if loss == "cross_entropy" else "regression"
        loss_fn = loss_for(kind)
    else:
        raise ConfigError(
            _TASK, f"loss {loss!r} is unknown", 'use "cross_entropy", "mse" or a callable'
        )
    train_fn = getattr(obj, "train", None)
    if train_fn is not None and cfg.train.local_steps > 0:
        raise ConfigError(
            "train.local_steps (--local-steps)",
            "the task brings its own train(model, loader, epochs, device)",
            "use --local-epochs",
        )
    n = cfg.fed.num_clients

    def client_data(ids: list[int]) -> dict[int, ClientData]:
        out = {}
        for c in ids:
            # under the client's own seed: user code drawing from the global RNGs gives
            # client c the same data on every run, whichever worker hosts it
            seed = derive_seed(cfg.fed.seed, "client_data", c)
            pair = call_seeded(seed, lambda c=c: obj.client_data(c, n))
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise ConfigError(
                    _TASK,
                    f"client_data({c}, {n}) must return (train, test or None)",
                    "return a 2-tuple of Datasets",
                )
            out[c] = ClientData(*pair)
        return out

    server_data = getattr(obj, "server_data", None)
    return Task(
        name=cfg.data.task,
        user=True,
        kind=kind,
        info=DatasetInfo((), 0, kind),
        loss_fn=loss_fn,
        _model=lambda: seeded(cfg, obj.model),
        _client_data=client_data,
        _central=(lambda: call_seeded(derive_seed(cfg.fed.seed, "server_data"), server_data))
        if callable(server_data)
        else (lambda: None),
        train_fn=train_fn if callable(train_fn) else None,
        eval_fn=getattr(obj, "evaluate", None)
        if callable(getattr(obj, "evaluate", None))
        else None,
    )
