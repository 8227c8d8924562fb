import numpy as np
import pytest
import scipy.sparse as sp

from cradle_jax.data.references import (
    NO_REFERENCE,
    counter_uniform,
    reference_medians,
    reference_pools,
)


def sample_references(groups, fail, split, mode, seed, n_samples=50):
    """Every cell's draws, (N, n_samples)."""
    pools = reference_pools(groups, fail, split, mode, seed, n_samples)
    return pools.draws(np.arange(len(groups)))


def _toy(seed=0, n=400):
    rng = np.random.default_rng(seed)
    groups = rng.choice(["A", "B", "C", "ctrl"], size=n)
    fail = rng.random(n) < 0.2
    fail[groups == "C"] = False  # group C has no fail cell: sentinel for everyone in it
    split = rng.choice([0, 1, 2, -1], size=n, p=[0.6, 0.2, 0.15, 0.05]).astype(np.int8)
    return groups, fail, split


def test_same_treatment_fail_references_share_split_and_group_and_fail():
    groups, fail, split = _toy()
    refs = sample_references(groups, fail, split, "same_treatment_fail", seed=0, n_samples=50)
    for i in range(len(groups)):
        drawn = refs[i][refs[i] != NO_REFERENCE]
        pool = np.flatnonzero((groups == groups[i]) & (split == split[i]) & fail)
        if split[i] == -1 or len(pool) == 0:
            assert len(drawn) == 0
            continue
        assert len(drawn) == min(len(pool), 50)
        assert (split[drawn] == split[i]).all()
        assert (groups[drawn] == groups[i]).all()
        assert fail[drawn].all()
        # padding only at the end
        assert (refs[i][: len(drawn)] != NO_REFERENCE).all()


def test_opposite_label_references():
    groups, fail, split = _toy(1)
    refs = sample_references(groups, fail, split, "opposite_label", seed=0, n_samples=50)
    for i in np.flatnonzero(split >= 0):
        drawn = refs[i][refs[i] != NO_REFERENCE]
        assert (fail[drawn] != fail[i]).all()
        assert (groups[drawn] == groups[i]).all()
        assert (split[drawn] == split[i]).all()
    assert (refs[(groups == "C") & ~fail & (split >= 0)][:, 0] == NO_REFERENCE).all()


def test_none_mode_and_seeding():
    groups, fail, split = _toy()
    assert (sample_references(groups, fail, split, "none", 0) == NO_REFERENCE).all()
    a = sample_references(groups, fail, split, "same_treatment_fail", 7)
    b = sample_references(groups, fail, split, "same_treatment_fail", 7)
    c = sample_references(groups, fail, split, "same_treatment_fail", 8)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError, match=r"data\.references"):
        sample_references(groups, fail, split, "nearest", 0)


def test_lower_median_even_k_and_sentinel():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 9, size=(30, 5)).astype(np.float32)
    refs = np.full((4, 6), NO_REFERENCE)
    refs[0, :4] = [3, 1, 1, 7]  # even k = 4 (a repeat, as with-replacement draws allow)
    refs[1, :5] = [0, 2, 4, 6, 8]  # odd k
    refs[2, :6] = [10, 11, 12, 13, 14, 29]
    # refs[3]: no reference
    out = reference_medians(refs, lambda idx: sp.csr_matrix(counts[idx]), 5)
    for i in range(3):
        rows = counts[refs[i][refs[i] >= 0]]
        k = len(rows)
        expected = np.sort(rows, axis=0)[(k - 1) // 2]  # lower median
        np.testing.assert_array_equal(out[i], expected)
    np.testing.assert_array_equal(out[3], 0)
    # the lower median differs from the mean-of-middle median for this even case
    rows = counts[[3, 1, 1, 7]]
    assert not np.array_equal(out[0], np.median(rows, axis=0)) or np.allclose(
        np.sort(rows, 0)[1], np.sort(rows, 0)[2]
    )


@pytest.mark.parametrize("seed", range(5))
def test_lower_median_matches_brute_force_on_sparse_counts(seed):
    """Mostly-zero counts put many genes right at the boundary where the median turns non-zero."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(0.7, size=(60, 40)).astype(np.float32)
    refs = np.full((25, 9), NO_REFERENCE)
    for i in range(24):  # the last cell keeps no reference
        k = rng.integers(1, 10)
        refs[i, :k] = rng.integers(0, 60, size=k)
    out = reference_medians(refs, lambda idx: sp.csr_matrix(counts[idx]), 40)
    for i in range(25):
        drawn = refs[i][refs[i] != NO_REFERENCE]
        expected = (
            np.sort(counts[drawn], axis=0)[(len(drawn) - 1) // 2] if len(drawn) else np.zeros(40)
        )
        np.testing.assert_array_equal(out[i], expected)


def test_draws_are_uniform_over_the_pool_and_independent_of_the_batch():
    n = 3000
    groups = np.where(np.arange(n) < 2000, "A", "B")
    fail = np.zeros(n, dtype=bool)
    fail[[3, 10, 500, 1999, 2500]] = True  # pool of A: 4 fail cells; of B: 1
    split = np.zeros(n, dtype=np.int8)
    pools = reference_pools(groups, fail, split, "same_treatment_fail", seed=3, n_samples=8)
    everyone = pools.draws(np.arange(n))
    # k = min(pool size, n_samples): 4 draws per A cell, 1 per B cell, the rest padding
    assert (everyone[:2000, :4] >= 0).all()
    assert (everyone[:2000, 4:] == NO_REFERENCE).all()
    assert (everyone[2000:, 0] == 2500).all()
    assert (everyone[2000:, 1:] == NO_REFERENCE).all()
    # 8000 draws from a pool of 4: each member near 1/4 (binomial sd 0.005)
    share = np.bincount(np.searchsorted([3, 10, 500, 1999], everyone[:2000, :4].ravel())) / 8000
    np.testing.assert_allclose(share, 0.25, atol=0.02)
    # a cell's draws do not depend on which cells are drawn with it, nor on their order
    some = np.array([1999, 7, 2500, 7, 42])
    np.testing.assert_array_equal(pools.draws(some), everyone[some])
    np.testing.assert_array_equal(pools.draws(some[::-1]), everyone[some[::-1]])
    assert pools.n_without_reference == 0


def test_counter_uniform_is_uniform_and_keyed():
    u = counter_uniform(np.uint64(12345), np.arange(200_000))
    assert u.min() >= 0
    assert u.max() < 1
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    chi2 = ((counts - 10_000) ** 2 / 10_000).sum()
    assert chi2 < 43.8  # 99.9% quantile of chi-square with 19 degrees of freedom
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01  # neighbouring counters uncorrelated
    np.testing.assert_array_equal(u[:10], counter_uniform(np.uint64(12345), np.arange(10)))
    assert not np.array_equal(u[:10], counter_uniform(np.uint64(12346), np.arange(10)))


def test_cells_of_no_split_and_empty_pools_count_as_without_reference():
    groups, fail, split = _toy()
    pools = reference_pools(groups, fail, split, "same_treatment_fail", seed=0, n_samples=50)
    draws = pools.draws(np.arange(len(groups)))
    assert pools.n_without_reference == int((draws[:, 0] == NO_REFERENCE).sum())
    assert pools.n_without_reference >= int(
        (split == -1).sum() + ((groups == "C") & (split >= 0)).sum()
    )
