from collections import Counter

import pytest

from fedrun.config import resolve_clients_per_round
from fedrun.sampling import clients_of, host_of, sample_clients
from fedrun.seeding import derive_seed


def test_sample_is_deterministic_distinct_and_sized():
    a = sample_clients(1000, 37, seed=3, round_=5)
    assert a == sample_clients(1000, 37, seed=3, round_=5)
    assert len(a) == len(set(a)) == 37 and all(0 <= c < 1000 for c in a)
    assert a == sorted(a)
    assert a != sample_clients(1000, 37, seed=3, round_=6)
    assert a != sample_clients(1000, 37, seed=4, round_=5)
    assert sample_clients(10, 10, 0, 1) == list(range(10))


# chi-square critical values at p = 0.001 (scipy.stats.chi2.ppf(0.999, df)): the samples are
# seeded, so each test is one fixed draw that a sampler this far from uniform would fail
CHI2_999 = {3: 16.266, 19: 43.820}


def test_sample_is_uniform_chi_square():
    """2000 rounds of 5 of 20 clients: each client is expected 500 times."""
    counts = Counter(c for r in range(2000) for c in sample_clients(20, 5, seed=0, round_=r))
    assert len(counts) == 20
    chi2 = sum((counts[c] - 500) ** 2 / 500 for c in range(20))
    assert chi2 < CHI2_999[19], chi2


def test_rounds_are_independent_chi_square():
    """If round r+1's sample is uniform whatever round r drew, the overlap of consecutive
    samples is hypergeometric: P(j) = C(5, j) C(15, 5 - j) / C(20, 5). Overlaps of 3 or more
    are pooled (expected counts above 5)."""
    from math import comb

    samples = [set(sample_clients(20, 5, seed=0, round_=r)) for r in range(2000)]
    overlaps = Counter(min(len(a & b), 3) for a, b in zip(samples, samples[1:], strict=False))
    p = [comb(5, j) * comb(15, 5 - j) / comb(20, 5) for j in range(6)]
    p = [*p[:3], sum(p[3:])]
    n = len(samples) - 1
    chi2 = sum((overlaps[j] - n * p[j]) ** 2 / (n * p[j]) for j in range(4))
    assert chi2 < CHI2_999[3], (chi2, overlaps)
    # a sampler that repeated its sample would have all overlaps at 5: far past the bound
    assert sum((n * (j == 3) - n * p[j]) ** 2 / (n * p[j]) for j in range(4)) > CHI2_999[3]


def test_eval_sampling_uses_its_own_stream():
    assert sample_clients(100, 10, 0, 1, "eval") != sample_clients(100, 10, 0, 1)


def test_sample_rejects_impossible_sizes():
    with pytest.raises(ValueError):
        sample_clients(5, 6, 0, 1)


@pytest.mark.parametrize("world", [2, 3, 5, 9])
def test_placement_partitions_clients_over_workers(world):
    n = 103
    hosted = [clients_of(r, n, world) for r in range(world)]
    assert hosted[0] == []  # the server hosts nobody
    flat = sorted(c for h in hosted for c in h)
    assert flat == list(range(n))
    for r in range(1, world):
        assert all(host_of(c, world) == r for c in hosted[r])
    sizes = [len(h) for h in hosted[1:]]
    assert max(sizes) - min(sizes) <= 1


def test_clients_per_round_count_or_fraction():
    assert resolve_clients_per_round(10, 30) == 10
    assert resolve_clients_per_round(0.1, 30) == 3
    assert resolve_clients_per_round(1.0, 30) == 30
    assert resolve_clients_per_round(0.001, 30) == 1  # never zero


def test_derived_seeds_differ_by_purpose_and_key():
    seeds = {derive_seed(0, "client", r, c) for r in range(20) for c in range(50)}
    assert len(seeds) == 1000
    assert derive_seed(0, "client", 1, 2) != derive_seed(0, "sample", 1, 2)
    assert derive_seed(2**40, "x") != derive_seed(0, "x")
    assert 0 <= derive_seed(123, "init") < 2**63
