"""Pooled datasets (one train set, one test set) split over clients by a partitioner.

Workers read the train files, partition the labels (same result on every worker) and keep only
their clients' rows; the server reads only the test files, its central evaluation set. Files are
read directly (CIFAR-10 python pickles, MNIST idx), with no per-sample transform: normalisation
is one tensor operation. torchvision is used only to download, and only with --download.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import pickle
from pathlib import Path

import numpy as np
import torch

from fedrun.config import Config
from fedrun.data import partition as P
from fedrun.data.types import ClientData, DatasetInfo, Split
from fedrun.errors import ConfigError, FedrunError
from fedrun.seeding import numpy_rng

_ROOT = "data.data_root (--data-root)"


def partition_indices(labels: np.ndarray, cfg: Config) -> list[np.ndarray]:
    """Client c's sample indices, for every client (pure function of labels and config)."""
    d, n = cfg.data, cfg.fed.num_clients
    rng = numpy_rng(cfg.fed.seed, "partition")
    if d.partition == "dirichlet":
        return P.dirichlet(labels, n, d.dirichlet_alpha, rng, d.min_samples)
    if d.partition == "shards":
        parts = P.shards(labels, n, d.shards_per_client, rng)
        small = min(len(p) for p in parts)
        if small < d.min_samples:
            raise ConfigError(
                "data.min_samples (--min-samples)",
                f"shards give a client only {small} samples",
                "lower --min-samples",
            )
        return parts
    return P.iid(labels, n, rng, d.min_samples)


class Pooled:
    """Base class: subclasses provide raw arrays (inputs as uint8 or float, labels as ints)."""

    partitions = ("iid", "dirichlet", "shards", "natural")
    input_shape: tuple[int, ...] = ()
    num_classes = 10
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    scale = 255.0  # raw value of "white"

    def raw(self, cfg: Config, train: bool) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def info(self, cfg: Config) -> DatasetInfo:
        return DatasetInfo(self.input_shape, self.num_classes, "classification")

    def tensor(self, x: np.ndarray) -> torch.Tensor:
        """Raw rows -> normalised float32 tensor of shape (N, *input_shape)."""
        t = torch.from_numpy(np.ascontiguousarray(x)).float().div_(self.scale)
        t = t.reshape(len(x), *self.input_shape)
        mean = torch.tensor(self.mean).view(-1, *[1] * (len(self.input_shape) - 1))
        std = torch.tensor(self.std).view_as(mean)
        return t.sub_(mean).div_(std)

    def split(self, x: np.ndarray, y: np.ndarray) -> Split:
        return Split(self.tensor(x), torch.from_numpy(y.astype(np.int64)))

    def client_data(self, cfg: Config, client_ids: list[int]) -> dict[int, ClientData]:
        x, y = self.raw(cfg, train=True)
        parts = partition_indices(y, cfg)
        out = {}
        for c in client_ids:
            idx = numpy_rng(cfg.fed.seed, "client-test-split", c).permutation(parts[c])
            n_test = int(len(idx) * cfg.data.client_test_fraction)
            tr, te = np.sort(idx[n_test:]), np.sort(idx[:n_test])
            out[c] = ClientData(self.split(x[tr], y[tr]), self.split(x[te], y[te]))
        return out

    def central_data(self, cfg: Config) -> Split:
        return self.split(*self.raw(cfg, train=False))


# --- files ----------------------------------------------------------------------------------


def _missing(name: str, root: Path, places: list[Path]) -> ConfigError:
    where = " or ".join(str(p) for p in places)
    return ConfigError(
        _ROOT,
        f"{name} files not found in {root} (looked in {where})",
        "pass --download (needs a network) or point --data-root at a directory holding them",
    )


def _first(places: list[Path], present) -> Path | None:
    """The first of `places` where `present(place)` holds."""
    return next((p for p in places if present(p)), None)


@contextlib.contextmanager
def _download_lock(root: Path):
    """One download per machine: ranks of a node take turns; later ones find the files."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".fedrun-download.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _locate(cfg: Config, tv_class: str, places, present) -> Path:
    """The folder holding the files: the first of `places(root)` (torchvision's layout first,
    then the files directly in --data-root, as the original downloads and Debian's packages
    lay them out) where `present(folder)`; downloaded through torchvision if none is and
    --download is set."""
    root = Path(cfg.data.data_root).expanduser()
    found = _first(places(root), present)
    if found is not None:
        return found
    if not cfg.data.download:
        raise _missing(tv_class, root, places(root))
    import torchvision.datasets as tvd

    with _download_lock(root):
        found = _first(places(root), present)
        if found is not None:
            return found
        try:
            for train in (True, False):
                getattr(tvd, tv_class)(str(root), train=train, download=True)
        except Exception as e:  # noqa: BLE001 - network errors come in many types
            raise FedrunError(f"downloading {tv_class} into {root} failed: {e}") from None
    return places(root)[0]


class _ArraysOnly(pickle.Unpickler):
    """CIFAR-10's python batches are pickles; a pickle can name any callable, so only what
    those files hold is allowed (numpy arrays, dicts, lists, bytes): a crafted file in
    --data-root then fails to load instead of running its code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def read_idx(path: Path) -> np.ndarray:
    """An idx file (MNIST format), optionally gzipped: big-endian magic 0x0000 08 <ndim>."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = bytearray(f.read())  # writable: torch tensors need it
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise FedrunError(f"{path} is not an unsigned-byte idx file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise FedrunError(f"{path} is truncated: {arr.size} bytes for shape {shape}")
    return arr.reshape(shape)


def _idx_file(raw: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (raw / name).exists():
            return raw / name
    return None


class _IdxDataset(Pooled):
    folder = "MNIST"
    tv_class = "MNIST"
    input_shape = (1, 28, 28)

    def places(self, root: Path) -> list[Path]:
        return [root / self.folder / "raw", root]

    def raw(self, cfg: Config, train: bool) -> tuple[np.ndarray, np.ndarray]:
        prefix = "train" if train else "t10k"
        stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")

        def present(folder: Path) -> bool:
            return all(_idx_file(folder, s) for s in stems)

        raw = _locate(cfg, self.tv_class, self.places, present)
        x, y = (read_idx(_idx_file(raw, s)) for s in stems)  # type: ignore[arg-type]
        if len(x) != len(y):
            raise FedrunError(f"{raw}: {len(x)} images but {len(y)} labels")
        return x, y


class MNIST(_IdxDataset):
    mean, std = (0.1307,), (0.3081,)


class FashionMNIST(_IdxDataset):
    folder = tv_class = "FashionMNIST"
    mean, std = (0.2860,), (0.3530,)


class CIFAR10(Pooled):
    """The Flower quickstart's data: normalised to mean 0.5, std 0.5 per channel."""

    input_shape = (3, 32, 32)
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    folder = "cifar-10-batches-py"

    def places(self, root: Path) -> list[Path]:
        return [root / self.folder, root]

    def raw(self, cfg: Config, train: bool) -> tuple[np.ndarray, np.ndarray]:
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]

        def present(folder: Path) -> bool:
            return all((folder / n).exists() for n in names)

        folder = _locate(cfg, "CIFAR10", self.places, present)
        xs, ys = [], []
        for n in names:
            try:
                with open(folder / n, "rb") as f:
                    batch = _ArraysOnly(f, encoding="bytes").load()
                xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3072))
                ys.append(np.asarray(batch[b"labels"], dtype=np.int64))
            except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as e:
                raise FedrunError(f"{folder / n} is not a CIFAR-10 batch ({e!r})") from None
        return np.concatenate(xs), np.concatenate(ys)


class Digits(Pooled):
    """scikit-learn's bundled 8x8 digits (1797 images, offline). A fixed 20% (not seed-dependent,
    so every seed is scored on the same images) is the server's central set."""

    input_shape = (1, 8, 8)
    scale = 16.0
    mean, std = (0.5,), (0.5,)

    def raw(self, cfg: Config, train: bool) -> tuple[np.ndarray, np.ndarray]:
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ConfigError(
                "data.dataset (--dataset)",
                "digits needs scikit-learn",
                "pip install 'fedrun[digits]'",
            ) from None
        x, y = load_digits(return_X_y=True)
        perm = np.random.default_rng(0).permutation(len(y))
        cut = int(0.8 * len(y))
        idx = np.sort(perm[:cut] if train else perm[cut:])
        return x[idx].astype(np.float32), y[idx].astype(np.int64)
