"""One try per element: the log-pmf of PTRS's acceptance test against SciPy."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from cradle_jax.models.sampling import tries


def test_stirling_log_pmf_matches_scipy():
    """float32 log-pmf of PTRS's acceptance test against SciPy's float64, ±6σ around λ and the
    tabulated k < 10; the naive k log λ − λ − lgamma(k + 1) errs by ~0.1 at λ = 10⁵."""
    lam = np.array([10.0, 1e3, 1e5, 2.0**23], np.float32)[:, None]
    k = np.floor(np.maximum(lam + np.linspace(-6, 6, 97) * np.sqrt(lam), 0.0))
    k = np.concatenate([np.broadcast_to(np.arange(10.0), (4, 10)), k], axis=1).astype(np.float32)
    ours = np.asarray(jax.jit(tries.poisson_log_pmf)(jnp.asarray(k), jnp.asarray(lam)))
    expected = stats.poisson.logpmf(k, lam)
    near = k > lam - 6.5 * np.sqrt(lam)
    np.testing.assert_allclose(ours[near], expected[near], atol=2e-3, rtol=1e-5)
    assert np.all(ours[~near] < -5)
