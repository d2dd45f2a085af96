import numpy as np
import pytest

from fedrun.config import Config
from fedrun.data import partition as P
from fedrun.data.pooled import partition_indices
from fedrun.errors import ConfigError

LABELS = np.random.default_rng(0).integers(0, 10, 2000)


def _rng():
    return np.random.default_rng(1)


def _uses_every_sample_once(parts, n):
    flat = np.concatenate(parts)
    assert len(flat) == n and len(np.unique(flat)) == n


def test_iid_balanced_and_complete():
    parts = P.iid(LABELS, 7, _rng())
    _uses_every_sample_once(parts, len(LABELS))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("alpha", [0.1, 1.0, 100.0])
def test_dirichlet_complete_and_min_size(alpha):
    parts = P.dirichlet(LABELS, 20, alpha, _rng(), min_samples=10)
    _uses_every_sample_once(parts, len(LABELS))
    assert min(len(p) for p in parts) >= 10


def _skew(parts) -> float:
    """Mean total-variation distance between client label mixes and the global mix."""
    counts = P.label_counts(LABELS, parts, 10).astype(float)
    mix = counts / counts.sum(1, keepdims=True)
    glob = np.bincount(LABELS, minlength=10) / len(LABELS)
    return float(0.5 * np.abs(mix - glob).sum(1).mean())


def test_label_skew_grows_as_alpha_shrinks():
    skews = [_skew(P.dirichlet(LABELS, 20, a, _rng(), 1)) for a in (100.0, 1.0, 0.1)]
    assert skews[0] < skews[1] < skews[2]
    assert skews[0] < 0.15 and skews[2] > 0.6
    assert _skew(P.iid(LABELS, 20, _rng())) < 0.15


def test_shards_give_few_classes_per_client():
    parts = P.shards(LABELS, 50, 2, _rng())
    _uses_every_sample_once(parts, len(LABELS))
    classes = [len(np.unique(LABELS[p])) for p in parts]
    assert max(classes) <= 4 and np.mean(classes) < 3  # two shards, each spans <= 2 labels
    assert {len(p) for p in parts} <= {40}


def test_deterministic_from_the_seed():
    cfg = Config()
    cfg.data.partition, cfg.fed.num_clients = "dirichlet", 10
    a, b = partition_indices(LABELS, cfg), partition_indices(LABELS, cfg)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    cfg.fed.seed = 1
    c = partition_indices(LABELS, cfg)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_impossible_requests_name_the_field():
    with pytest.raises(ConfigError, match=r"data.shards_per_client .*shards requested"):
        P.shards(LABELS[:10], 6, 2, _rng())
    with pytest.raises(ConfigError, match=r"data.min_samples .*exceeds"):
        P.iid(LABELS[:10], 6, _rng(), min_samples=2)
    with pytest.raises(ConfigError, match=r"data.min_samples .*exceeds"):
        P.dirichlet(LABELS[:100], 21, 0.5, _rng(), min_samples=5)


def test_dirichlet_never_fails_when_the_samples_suffice_and_stays_fast():
    """20 clients x 5 of 100 samples at alpha 0.01 (no draw holds) and 10^4 clients x 2 of
    50,000 at alpha 0.5: at most 10 draws, then the short clients are topped up (a 1000-draw
    retry loop took minutes at 10^4 clients before failing)."""
    parts = P.dirichlet(LABELS[:100], 20, 0.01, _rng(), min_samples=5)
    _uses_every_sample_once(parts, 100)
    assert {len(p) for p in parts} == {5}  # every sample was needed
    labels = np.random.default_rng(2).integers(0, 10, 50_000)
    parts = P.dirichlet(labels, 10_000, 0.5, _rng(), min_samples=2)
    _uses_every_sample_once(parts, 50_000)
    assert min(len(p) for p in parts) >= 2


def test_top_up_moves_from_the_largest_clients_only():
    parts = [np.arange(0, 10), np.arange(10, 13), np.array([13]), np.array([], dtype=np.int64)]
    out = P.top_up(parts, 3, _rng())
    assert [len(p) for p in out] == [5, 3, 3, 3]
    assert np.array_equal(out[1], parts[1])  # a client at the minimum gives nothing
    assert set(np.concatenate(out[2:])) - {13} <= set(parts[0])
    _uses_every_sample_once(out, 14)
