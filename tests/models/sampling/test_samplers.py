"""The vectorised Gamma, Poisson and Gamma–Poisson samplers (`cradle_jax.models.sampling`) against
SciPy's distributions; determinism, shapes, extremes, jit/vmap and NumPyro handlers for
`GeneNegativeBinomial.sample`.

Goodness of fit: a chi-square test on at most 40 bins of roughly equal probability, or a KS
test, with fixed keys, each required to give p > 1e-3; empirical means and variances within 5
standard errors (SE from the distribution's own variance and kurtosis). Each sampler is compiled
for one shape, all parameter values of a test in the columns of one array.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import handlers
from scipy import stats

from cradle_jax.models import sampling
from cradle_jax.models.distributions import GeneNegativeBinomial
from cradle_jax.models.sampling.tries import MAX_POISSON_RATE

P_MIN = 1e-3  # goodness-of-fit tests must not reject at this level
N_SE = 5.0  # moments within this many standard errors


def chi_square_p(samples: np.ndarray, reference) -> float:
    """p-value of a chi-square test of integer samples against a frozen SciPy discrete
    distribution, on bins cut at its distinct 40-quantiles (each tail beyond them one bin)."""
    edges = np.unique(reference.ppf(np.linspace(0.0, 1.0, 41)[1:-1]))
    cdf = np.concatenate([[0.0], reference.cdf(edges), [1.0]])
    expected = np.diff(cdf) * samples.size
    observed = np.bincount(np.searchsorted(edges, samples), minlength=edges.size + 1)
    statistic = np.sum((observed - expected) ** 2 / expected)
    return stats.chi2.sf(statistic, df=edges.size)


def assert_moments(samples: np.ndarray, reference) -> None:
    """Mean and variance within N_SE standard errors of the reference's."""
    mean, var, _, excess_kurtosis = (float(m) for m in reference.stats(moments="mvsk"))
    n = samples.size
    x = samples.astype(np.float64)
    assert abs(x.mean() - mean) < N_SE * np.sqrt(var / n)
    assert abs(x.var() - var) < N_SE * var * np.sqrt((excess_kurtosis + 2.0) / n)


@jax.jit
def gamma_columns(key, alpha):
    return sampling.sample_gamma(key, alpha, (40_000, 6))


@jax.jit
def poisson_columns(key, rate):
    return sampling.sample_poisson(key, rate, (40_000, 8))


@jax.jit
def nb_columns(key, theta, rate):
    return sampling.sample_gamma_poisson(key, theta, rate, (50_000, 6))


def test_gamma_matches_scipy():
    alpha = np.array([0.1, 0.3, 1.0, 2.5, 30.0, 1e4], np.float32)  # P(G < 2⁻¹²⁶) < 2e-4
    g = np.asarray(gamma_columns(jax.random.key(1), jnp.asarray(alpha)))
    assert g.dtype == np.float32
    assert np.all(np.isfinite(g))
    assert np.all(g >= 0)
    for j, a in enumerate(alpha):
        reference = stats.gamma(float(a))
        assert stats.kstest(g[:, j], reference.cdf).pvalue > P_MIN, a
        assert_moments(g[:, j], reference)


def test_gamma_of_tiny_concentration_matches_scipy_cdf():
    """α = 1e-3: most values underflow float32 (P(G < 1e-38) ≈ 0.92), so the cdf is checked at
    representable points, each fraction within N_SE binomial standard errors."""
    g = np.asarray(gamma_columns(jax.random.key(2), jnp.asarray(np.full(6, 1e-3, np.float32))))
    assert np.all(np.isfinite(g))
    assert np.all(g >= 0)
    for t in (1e-30, 1e-8, 1e-3, 0.1):
        p = stats.gamma(1e-3).cdf(t)
        assert abs(np.mean(g <= t) - p) < N_SE * np.sqrt(p * (1 - p) / g.size), t


def test_poisson_matches_scipy():
    """Both sides of λ = 10 (inversion below, PTRS from there) and large λ."""
    rate = np.array([0.02, 0.7, 3.0, 9.99, 10.0, 37.0, 1e3, 1e5], np.float32)
    x = np.asarray(poisson_columns(jax.random.key(3), jnp.asarray(rate)))
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, np.round(x))
    for j, lam in enumerate(rate):
        reference = stats.poisson(float(lam))
        assert chi_square_p(x[:, j], reference) > P_MIN, lam
        assert_moments(x[:, j], reference)
    assert chi_square_p(x[:, 5], stats.poisson(37.0 * 1.02)) < P_MIN  # the test has power


def test_poisson_of_zero_rate_is_zero():
    x = poisson_columns(jax.random.key(4), jnp.asarray([0.0, 5.0] * 4, jnp.float32))
    assert np.all(np.asarray(x)[:, ::2] == 0)


NB_GRID = [(1e-3, 5.0), (0.3, 0.5), (1.0, 5.0), (2.0, 100.0), (50.0, 30.0), (1e4, 3.0)]


def test_gamma_poisson_matches_scipy_nbinom():
    """NB(θ, μ) as SciPy's nbinom(n = θ, p = θ / (θ + μ)). At θ = 50, μ = 30 nearly every λ is
    ≥ 10, left by the first try to PTRS: with that column a sixth of the array, more elements
    are unfinished than the first retry buffer holds."""
    theta = np.array([t for t, _ in NB_GRID], np.float32)
    mean = np.array([m for _, m in NB_GRID], np.float32)
    x = np.asarray(nb_columns(jax.random.key(5), jnp.asarray(theta), jnp.asarray(theta / mean)))
    np.testing.assert_array_equal(x, np.round(x))
    for j, (t, m) in enumerate(NB_GRID):
        reference = stats.nbinom(t, t / (t + m))
        assert chi_square_p(x[:, j], reference) > P_MIN, (t, m)
        assert_moments(x[:, j], reference)
    assert chi_square_p(x[:, 2], stats.nbinom(1.0, 1.0 / 6.25)) < P_MIN  # μ 5 → 5.25 is seen


def test_same_key_same_samples_other_key_other_samples():
    theta, rate = jnp.ones(6, jnp.float32), jnp.full(6, 0.2, jnp.float32)
    a = np.asarray(nb_columns(jax.random.key(6), theta, rate))
    np.testing.assert_array_equal(a, nb_columns(jax.random.key(6), theta, rate))
    assert np.mean(a != np.asarray(nb_columns(jax.random.key(7), theta, rate))) > 0.5


def test_zero_mean_and_extreme_parameters_give_finite_counts():
    """θ from 1e-3 to 1e4, μ from 0 to 1e12 (λ capped at 2²³): finite non-negative integers."""
    mean = np.array([0.0, 1e-6, 1.0, 1e4, 1e6, 1e12], np.float32)
    for theta in (1e-3, 1.0, 1e4):
        with np.errstate(divide="ignore"):
            rate = jnp.asarray(np.float32(theta) / mean)
        x = np.asarray(nb_columns(jax.random.key(8), jnp.full(6, theta, jnp.float32), rate))
        assert np.all(np.isfinite(x)), theta
        assert np.all(x >= 0), theta
        np.testing.assert_array_equal(x, np.round(x))
        assert np.all(x[:, 0] == 0)
        assert np.all(x[:, 5] <= MAX_POISSON_RATE * 1.01)
    assert abs(x[:, 4].mean() / 1e6 - 1) < 1e-3  # θ = 1e4, μ = 1e6: sd of the mean 1e-4·μ


def test_distribution_sample_shape_dtype_and_numpyro_handlers():
    theta = jnp.asarray([0.5, 2.0, 8.0])
    rate = jnp.full((2, 4, 3), 0.25)
    d = GeneNegativeBinomial(theta, rate)
    x = jax.jit(d.sample, static_argnums=1)(jax.random.key(9), (5,))
    assert x.shape == (5, 2, 4, 3)
    assert x.dtype == jnp.float32
    assert np.all(np.asarray(x) >= 0)

    def model():
        return numpyro.sample("x", GeneNegativeBinomial(theta, rate))

    @jax.jit
    def seeded(key):
        return handlers.trace(handlers.seed(model, key)).get_trace()["x"]["value"]

    value = seeded(jax.random.key(10))
    assert value.shape == (2, 4, 3)
    assert value.dtype == jnp.float32
    np.testing.assert_array_equal(value, seeded(jax.random.key(10)))
    assert np.any(np.asarray(value) != np.asarray(seeded(jax.random.key(11))))
    given = jnp.arange(24.0).reshape(2, 4, 3)
    substituted = handlers.seed(handlers.substitute(model, data={"x": given}), 0)
    np.testing.assert_array_equal(substituted(), given)


def test_jit_and_vmap_give_the_samples_of_each_key():
    """vmap over keys (the while loops then run until every key's elements are done) gives
    each key's own samples; one level of retry buffers is used (4,000 > MIN_SIZE)."""
    theta, rate = jnp.asarray([0.4, 3.0]), jnp.asarray([0.05, 0.3])

    def draw(key):
        return sampling.sample_gamma_poisson(key, theta, rate, (2000, 2))

    keys = jax.random.split(jax.random.key(12), 3)
    batched = np.asarray(jax.jit(jax.vmap(draw))(keys))
    for i in range(3):
        np.testing.assert_array_equal(batched[i], jax.jit(draw)(keys[i]))
    assert not np.array_equal(batched[0], batched[1])


def test_draws_are_pinned():
    """A few draws of each sampler as the code gave them when its modules were split: any change
    of the random words, the tries or the retry buffers changes them. The counts are exact; the
    (3000, 6) Gamma–Poisson array goes two retry buffers deep. Gamma values to float32 rounding.
    """
    theta = jnp.asarray([1e-3, 0.3, 1.0, 2.0, 50.0, 1e4], jnp.float32)
    mean = jnp.asarray([5.0, 0.5, 5.0, 100.0, 30.0, 3.0], jnp.float32)
    draw = jax.jit(sampling.sample_gamma_poisson, static_argnums=3)
    x = np.asarray(draw(jax.random.key(13), theta, theta / mean, (3000, 6)))
    np.testing.assert_array_equal(
        x[:3], [[0, 1, 0, 137, 35, 6], [0, 0, 12, 49, 34, 2], [0, 1, 6, 31, 28, 4]]
    )
    np.testing.assert_array_equal(
        x.sum(0, dtype=np.float64), [12681, 1603, 14820, 303291, 90466, 9046]
    )
    gamma = jax.jit(sampling.sample_gamma, static_argnums=2)
    g = np.asarray(gamma(jax.random.key(14), jnp.asarray([0.1, 1.0, 30.0]), (2000, 3)))
    np.testing.assert_allclose(g[0], [1.2890788e-10, 0.7701242, 36.184242], rtol=1e-6)
    poisson = jax.jit(sampling.sample_poisson, static_argnums=2)
    rate = jnp.asarray([0.7, 9.99, 10.0, 1e3])
    p = np.asarray(poisson(jax.random.key(15), rate, (2000, 4)))
    np.testing.assert_array_equal(p[:2], [[2, 9, 7, 1000], [1, 6, 9, 983]])
    np.testing.assert_array_equal(p.sum(0, dtype=np.float64), [1406, 20311, 19952, 1999978])
