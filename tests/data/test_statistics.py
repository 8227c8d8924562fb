import numpy as np
import scipy.sparse as sp

from cradle_jax.data.counts import InMemoryCounts
from cradle_jax.data.statistics import log_standardize_stats, obs_counts


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
