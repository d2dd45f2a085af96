import math

import numpy as np
import torch

from fedrun.config import Config
from fedrun.data.synthetic import CLASSES, DIM, _device, _draw
from fedrun.registry import DATASETS

DS = DATASETS.load("synthetic")


def _cfg(**data) -> Config:
    cfg = Config()
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg


def test_shapes_sizes_and_90_10_split():
    cfg = Config()
    data = DS.client_data(cfg, list(range(30)))
    assert len(data) == 30
    for d in data.values():
        n = len(d.train) + len(d.test)
        assert n >= 50  # int(LogNormal(4, 2)) + 50
        assert len(d.train) == int(0.9 * n)
        assert d.train.x.shape[1] == DIM and d.train.x.dtype == torch.float32
        assert d.train.y.dtype == torch.int64
        assert int(d.train.y.min()) >= 0 and int(d.train.y.max()) < CLASSES


def test_deterministic_and_each_device_independent_of_the_others():
    cfg = Config()
    all_ = DS.client_data(cfg, list(range(30)))
    alone = DS.client_data(cfg, [17])[17]
    assert torch.equal(alone.train.x, all_[17].train.x)
    assert torch.equal(alone.test.y, all_[17].test.y)
    cfg.fed.seed = 1
    assert not torch.equal(DS.client_data(cfg, [17])[17].train.x[:5], alone.train.x[:5])


def test_sample_counts_follow_the_lognormal_power_law():
    cfg = Config()
    n = np.array([_device(cfg, k)[0] for k in range(4000)])
    assert n.min() >= 50
    # n - 50 = floor(X), X ~ LogNormal(4, 2), so P(n - 50 < t) = Phi((ln t - 4) / 2) for integer t
    for t in (7, 55, 404, 3000):
        expected = 0.5 * (1 + math.erf((math.log(t) - 4) / 2 / math.sqrt(2)))
        assert abs(np.mean(n - 50 < t) - expected) < 0.025, t  # sd of the estimate <= 0.008


def test_feature_covariance_is_diag_j_pow_minus_1_2():
    cfg = Config()
    _, mean_x, w, b = _device(cfg, 0)
    s = _draw(np.random.default_rng(0), 40000, mean_x, w, b)
    var = s.x.double().var(dim=0).numpy()
    expected = np.arange(1, DIM + 1, dtype=float) ** -1.2
    np.testing.assert_allclose(var, expected, rtol=0.05)
    np.testing.assert_allclose(s.x.double().mean(dim=0).numpy(), mean_x, atol=0.02)
    # labels are argmax(x W + b), the softmax's argmax
    assert torch.equal(s.y, (s.x.double() @ torch.from_numpy(w) + torch.from_numpy(b)).argmax(1))


def _label_tv(cfg: Config) -> float:
    hists = []
    for d in DS.client_data(cfg, list(range(30))).values():
        h = torch.bincount(d.train.y, minlength=CLASSES).double()
        hists.append(h / h.sum())
    h = torch.stack(hists)
    return float(0.5 * (h - h.mean(0)).abs().sum(1).mean())


def test_iid_variant_shares_one_model_and_is_less_skewed():
    iid = _cfg(partition="iid")
    ws = [_device(iid, k)[2] for k in range(3)]
    assert np.array_equal(ws[0], ws[1]) and np.array_equal(ws[1], ws[2])
    assert not np.array_equal(_device(Config(), 0)[2], _device(Config(), 1)[2])
    assert _label_tv(iid) < 0.5 * _label_tv(Config())


def test_central_set_is_fresh_samples_of_every_device():
    cfg = Config()
    central = DS.central_data(cfg)
    clients = DS.client_data(cfg, list(range(30)))
    assert len(central) == sum(len(d.test) for d in clients.values())
    every_client_row = torch.cat([torch.cat([d.train.x, d.test.x]) for d in clients.values()])
    # no central row is a client row
    assert torch.cdist(central.x[:200], every_client_row).min() > 1e-3
