"""The real loading code on small files written here in the real formats."""

import gzip
import pickle

import numpy as np
import pytest
import torch

from fedrun import checks
from fedrun.config import Config
from fedrun.errors import ConfigError, FedrunError
from fedrun.registry import DATASETS


def write_cifar(root, n_train=50, n_test=20, seed=0, folder="cifar-10-batches-py"):
    """CIFAR-10 python batches: dicts with b'data' (N x 3072 uint8, R then G then B planes)
    and b'labels', in root/folder (root itself for folder=""). Returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder = root / folder
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else n_train // 5
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": b"x"}, f)
        written[name] = (data, labels)
    return written


def write_idx(path, arr: np.ndarray, gz: bool = False):
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    payload = header + arr.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def write_mnist(root, folder="MNIST", n_train=60, n_test=20, gz=False, seed=0, flat=False):
    """idx files in torchvision's root/folder/raw/, or (flat) in root itself as the original
    download and Debian's dataset packages lay them out."""
    rng = np.random.default_rng(seed)
    raw = root if flat else root / folder / "raw"
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x, gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y, gz)
        out[prefix] = (x, y)
    return out


def _cfg(dataset, root, **kw) -> Config:
    cfg = Config()
    cfg.data.dataset, cfg.data.data_root, cfg.data.partition = dataset, str(root), "iid"
    cfg.fed.num_clients, cfg.fed.clients_per_round = 4, 2
    for k, v in kw.items():
        setattr(cfg.data, k, v)
    return checks.validate(cfg)


def test_cifar10_pickles(tmp_path):
    written = write_cifar(tmp_path)
    ds = DATASETS.load("cifar10")
    cfg = _cfg("cifar10", tmp_path)
    central = ds.central_data(cfg)
    data, labels = written["test_batch"]
    assert central.x.shape == (20, 3, 32, 32) and central.y.tolist() == labels
    # pixel (row 0, plane G, y=1, x=2) -> normalised with mean 0.5 std 0.5
    raw = data[0, 1024 + 1 * 32 + 2]
    assert central.x[0, 1, 1, 2].item() == pytest.approx((raw / 255 - 0.5) / 0.5, abs=1e-6)
    clients = ds.client_data(cfg, [0, 1, 2, 3])
    total = sum(len(c.train) + len(c.test) for c in clients.values())
    assert total == 50
    all_train = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    x0 = clients[0].train.x[0]
    # every client row is one of the written training rows
    as_raw = np.round((x0.numpy() * 0.5 + 0.5) * 255).astype(np.uint8).reshape(-1)
    assert (all_train == as_raw).all(axis=1).any()


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")]
)
def test_idx_files(tmp_path, name, folder, gz):
    written = write_mnist(tmp_path, folder=folder, gz=gz)
    ds = DATASETS.load(name)
    cfg = _cfg(name, tmp_path)
    central = ds.central_data(cfg)
    x, y = written["t10k"]
    assert central.x.shape == (20, 1, 28, 28)
    assert central.y.tolist() == y.tolist()
    expected = (x[3, 4, 5] / 255 - ds.mean[0]) / ds.std[0]
    assert central.x[3, 0, 4, 5].item() == pytest.approx(expected, abs=1e-5)
    clients = ds.client_data(cfg, [0, 1, 2, 3])
    assert sum(len(c.train) + len(c.test) for c in clients.values()) == 60


@pytest.mark.parametrize("gz", [False, True])
def test_files_directly_in_the_data_root(tmp_path, gz):
    """/usr/share/datasets/fashion-mnist (Debian) holds the four idx files themselves."""
    written = write_mnist(tmp_path, gz=gz, flat=True)
    central = DATASETS.load("fashion-mnist").central_data(_cfg("fashion-mnist", tmp_path))
    assert central.y.tolist() == written["t10k"][1].tolist()
    cifar = write_cifar(tmp_path / "c", folder="")  # the extracted folder given as the root
    central = DATASETS.load("cifar10").central_data(_cfg("cifar10", tmp_path / "c"))
    assert central.y.tolist() == cifar["test_batch"][1]


def test_a_cifar_batch_that_names_other_code_is_refused(tmp_path):
    written = write_cifar(tmp_path)
    marker = tmp_path / "ran"

    class RunsCode:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    data, labels = written["test_batch"]
    with open(path, "wb") as f:
        pickle.dump({b"data": data, b"labels": labels, b"x": RunsCode()}, f)
    with pytest.raises(FedrunError, match="io.open is not allowed in a CIFAR-10 batch"):
        DATASETS.load("cifar10").central_data(_cfg("cifar10", tmp_path))
    assert not marker.exists()


def test_missing_files_name_the_path_and_the_flag(tmp_path):
    cfg = _cfg("cifar10", tmp_path / "nothing")
    with pytest.raises(ConfigError) as e:
        DATASETS.load("cifar10").central_data(cfg)
    msg = str(e.value)
    assert msg.startswith("data.data_root (--data-root)")
    assert str(tmp_path / "nothing") in msg and "--download" in msg and "\n" not in msg
    where = tmp_path / "nothing"
    assert f"(looked in {where / 'cifar-10-batches-py'} or {where})" in msg  # every place
    with pytest.raises(ConfigError, match="MNIST files not found"):
        DATASETS.load("mnist").client_data(_cfg("mnist", tmp_path), [0])


def test_truncated_and_corrupt_files(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(FedrunError, match="truncated"):
        DATASETS.load("mnist").central_data(_cfg("mnist", tmp_path))
    write_cifar(tmp_path / "c")
    (tmp_path / "c" / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(FedrunError, match="is not a CIFAR-10 batch"):
        DATASETS.load("cifar10").central_data(_cfg("cifar10", tmp_path / "c"))


def test_digits_offline_split():
    cfg = _cfg("digits", "/unused")
    ds = DATASETS.load("digits")
    central = ds.central_data(cfg)
    clients = ds.client_data(cfg, list(range(4)))
    n_clients = sum(len(c.train) + len(c.test) for c in clients.values())
    assert len(central) + n_clients == 1797  # scikit-learn's digits, nothing lost
    assert central.x.shape[1:] == (1, 8, 8)
    assert central.x.min() >= -1.0 and central.x.max() <= 1.0


def test_fake_is_seeded_per_client_and_learnable_shape():
    cfg = _cfg("fake", "/unused", fake_shape="1,4,4", fake_samples=30, fake_classes=3)
    ds = DATASETS.load("fake")
    a = ds.client_data(cfg, [0, 1])
    b = ds.client_data(cfg, [1])
    assert torch.equal(a[1].train.x, b[1].train.x)
    assert not torch.equal(a[0].train.x, a[1].train.x)
    assert a[0].train.x.shape == (30, 1, 4, 4) and len(a[0].test) == 3
    assert set(a[0].train.y.tolist()) <= {0, 1, 2}
    assert len(ds.central_data(cfg)) == 1000
