import numpy as np
import scipy.sparse as sp

from cradle_jax.data.counts import InMemoryCounts
from cradle_jax.data.statistics import count_moments, log_standardize_stats, obs_counts


def test_log_standardize_stats_match_numpy_on_training_rows_only():
    rng = np.random.default_rng(0)
    x = rng.poisson(2.0, size=(40, 6)).astype(np.float32)
    x[:, 5] = 3.0  # zero variance gene
    train = np.flatnonzero(rng.random(40) < 0.6)
    stats = log_standardize_stats(InMemoryCounts(sp.csr_matrix(x)), train)
    logged = np.log1p(x[train].astype(np.float64))
    np.testing.assert_allclose(stats.mean, logged.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats.std, logged.std(0, ddof=1), rtol=1e-5, atol=1e-6)
    assert stats.std[5] == 0


def test_log_standardize_stats_across_row_blocks():
    rng = np.random.default_rng(1)
    x = rng.poisson(1.0, size=(50_000, 3)).astype(np.float32)  # > one ROW_BLOCK
    cells = np.arange(0, 50_000, 3)
    stats = log_standardize_stats(InMemoryCounts(sp.csr_matrix(x)), cells)
    np.testing.assert_allclose(stats.mean, np.log1p(x[cells].astype(np.float64)).mean(0), rtol=1e-6)


def test_obs_count_vectors():
    dosage = sp.csr_matrix(np.array([[0, 0], [1, 0], [1, 1], [0, 1], [1, 0]], dtype=np.float32))
    qc = np.array([[0, 1], [1, 0], [1, 1], [0, 0], [0, 1]], dtype=np.float32)
    cells = np.array([0, 2, 3, 4])
    counts = obs_counts(dosage, qc, cells)
    np.testing.assert_array_equal(counts.dosage, (dosage.toarray()[cells] != 0).sum(0))
    np.testing.assert_array_equal(counts.qc, (qc[cells] != 0).sum(0))
    np.testing.assert_array_equal(counts.dosage, [2, 2])
    np.testing.assert_array_equal(counts.qc, [1, 3])


def test_count_moments_match_numpy_on_the_chosen_rows():
    rng = np.random.default_rng(2)
    x = rng.negative_binomial(2.0, 0.3, size=(30, 5)).astype(np.float32)
    x[:, 4] = 0  # a gene never seen
    library = x.sum(axis=1) + 10.0
    cells = np.flatnonzero(rng.random(30) < 0.7)
    moments = count_moments(InMemoryCounts(sp.csr_matrix(x)), cells, library, pseudo_count=0.5)
    xs, ell = x[cells].astype(np.float64), library[cells].astype(np.float64)[:, None]
    p = (xs.sum(0) + 0.5) / (ell.sum() + 0.5 * 5)
    mu = ell * p
    theta = (mu**2).sum(0) / ((xs - mu) ** 2 - mu).sum(0)
    np.testing.assert_allclose(moments.proportion, p, rtol=1e-10)
    np.testing.assert_allclose(moments.dispersion[:4], theta[:4], rtol=1e-8)
    assert np.isinf(moments.dispersion[4])  # no excess variance: Poisson or less


def test_count_moments_recover_a_planted_negative_binomial():
    """Cells of unequal depth, NB counts with known shares and dispersions, no other spread."""
    rng = np.random.default_rng(3)
    n, share, theta = 40_000, np.array([0.05, 0.01, 0.002]), np.array([30.0, 2.0, 0.5])
    library = rng.lognormal(np.log(2_000), 0.4, size=n)
    mean = library[:, None] * share
    x = rng.poisson(rng.gamma(theta, mean / theta))  # Gamma–Poisson: Var = μ + μ²/θ
    moments = count_moments(
        InMemoryCounts(sp.csr_matrix(x.astype(np.float32))), np.arange(n), library
    )
    np.testing.assert_allclose(moments.proportion, share, rtol=0.02)
    np.testing.assert_allclose(moments.dispersion, theta, rtol=0.1)
