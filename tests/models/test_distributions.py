"""Straight-through relaxed Bernoulli (docs/method.md#straight-through-masks) vs NumPy, and
its use in a NumPyro guide; the per-gene negative binomial of the library_nb head
(docs/method.md#networks) vs NumPyro and SciPy."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import Trace_ELBO
from scipy.special import expit, log_expit
from scipy.stats import nbinom

from cradle_jax.models.distributions import GeneNegativeBinomial, StraightThroughBernoulli

LOGITS = np.array([[-3.0, -0.7, 0.0], [0.4, 1.5, 6.0]], np.float32)
EPS = np.finfo(np.float32).eps


def np_soft(logits, u, temperature):
    """The relaxed sample in float64, from the same uniforms."""
    u = np.clip(u.astype(np.float64), EPS, 1 - EPS)
    p = np.clip(expit(logits.astype(np.float64)), EPS, 1 - EPS)
    return expit((np.log(p) - np.log1p(-p) + np.log(u) - np.log1p(-u)) / temperature)


def test_sample_is_rounded_relaxed_sample_from_the_same_uniforms():
    key = jax.random.key(3)
    d = StraightThroughBernoulli(LOGITS, temperature=0.5)
    m = np.asarray(d.sample(key, (7,)))
    assert m.shape == (7, 2, 3)
    assert m.dtype == np.float32
    assert set(np.unique(m)) <= {0.0, 1.0}
    u = np.asarray(jax.random.uniform(key, (7, 2, 3)))
    np.testing.assert_array_equal(m, np.round(np_soft(LOGITS, u, 0.5)))
    np.testing.assert_array_equal(d.rsample(key, (7,)), m)


def test_log_prob_is_exact_bernoulli():
    d = StraightThroughBernoulli(LOGITS)
    value = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], np.float32)
    p = expit(LOGITS.astype(np.float64))
    expected = value * np.log(p) + (1 - value) * np.log1p(-p)
    np.testing.assert_allclose(d.log_prob(value), expected, rtol=1e-6)
    np.testing.assert_allclose(d.mean, p, rtol=1e-6)
    np.testing.assert_array_equal(d.mode, (p > 0.5).astype(np.float32))


def test_straight_through_gradient_is_the_relaxed_gradient():
    key, tau = jax.random.key(4), 0.7
    w = np.arange(1.0, 7.0, dtype=np.float32).reshape(2, 3)

    def f(logits):
        return jnp.sum(w * StraightThroughBernoulli(logits, tau).sample(key))

    grad = np.asarray(jax.grad(f)(jnp.asarray(LOGITS)))
    soft = np_soft(LOGITS, np.asarray(jax.random.uniform(key, LOGITS.shape)), tau)
    # ∂hard/∂soft = 1; ∂soft/∂φ = soft(1−soft)/τ · ∂logit(p)/∂φ, and ∂logit(p)/∂φ = 1 inside
    # the clip (up to float32 rounding of logit(σ(φ)) at |φ| = 6: hence atol).
    np.testing.assert_allclose(grad, w * soft * (1 - soft) / tau, rtol=1e-4, atol=1e-6)
    assert np.all(grad > 0)


def test_empirical_mean_is_sigmoid_of_logits():
    n = 20000
    logits = np.array([-2.0, -0.3, 0.0, 1.5], np.float32)
    m = np.asarray(StraightThroughBernoulli(logits).sample(jax.random.key(5), (n,)))
    p = expit(logits.astype(np.float64))
    assert np.all(np.abs(m.mean(0) - p) < 4 * np.sqrt(p * (1 - p) / n))


def test_non_finite_logits_are_sanitised_to_zero():
    d = StraightThroughBernoulli(np.array([np.nan, np.inf, -np.inf, 1.0], np.float32))
    np.testing.assert_array_equal(d.logits, [0.0, 0.0, 0.0, 1.0])
    assert np.all(np.isfinite(d.sample(jax.random.key(6), (3,))))
    np.testing.assert_allclose(d.log_prob(jnp.ones(4)), log_expit([0.0, 0.0, 0.0, 1.0]), rtol=1e-6)


def test_expand_and_pytree_round_trip():
    d = StraightThroughBernoulli(LOGITS[0], temperature=0.5).expand((4, 2, 3)).to_event(1)
    assert d.batch_shape == (4, 2)
    assert d.event_shape == (3,)
    assert d.has_rsample
    assert d.sample(jax.random.key(7)).shape == (4, 2, 3)
    leaves, tree = jax.tree.flatten(StraightThroughBernoulli(LOGITS, 0.5))
    back = jax.tree.unflatten(tree, leaves)
    np.testing.assert_array_equal(back.logits, LOGITS)
    assert back.temperature == 0.5


class _ValueWithoutGradient(StraightThroughBernoulli):
    """The same sample with the straight-through path cut: only the log_prob path remains."""

    def sample(self, key, sample_shape=()):
        return jax.lax.stop_gradient(super().sample(key, sample_shape))


def _elbo_grad(guide_dist, rng):
    w = jnp.asarray(np.linspace(-1.0, 2.0, 6).reshape(2, 3), jnp.float32)

    def model():
        m = numpyro.sample("mask", dist.Bernoulli(logits=-1.0).expand((2, 3)).to_event(2))
        numpyro.sample("y", dist.Normal(jnp.sum(w * m), 1.0), obs=1.5)

    def guide():
        logits = numpyro.param("mask_logits", jnp.zeros((2, 3)))
        numpyro.sample("mask", guide_dist(logits).to_event(2))

    def loss(params):
        return Trace_ELBO().loss(rng, params, model, guide)

    return jax.jit(jax.grad(loss))({"mask_logits": jnp.asarray(LOGITS)})["mask_logits"]


def test_trace_elbo_gradient_reaches_logits_through_both_paths():
    rng = jax.random.key(8)
    full = np.asarray(_elbo_grad(StraightThroughBernoulli, rng))
    log_prob_path = np.asarray(_elbo_grad(_ValueWithoutGradient, rng))
    value_path = full - log_prob_path
    assert np.all(np.isfinite(full))
    # With m fixed, ∂(−ELBO)/∂φ = ∂ log q(m)/∂φ = m − σ(φ), so the path adds σ(φ) back to 0 or 1.
    m = log_prob_path + expit(LOGITS)
    np.testing.assert_allclose(m, np.round(m), atol=1e-5)
    assert np.abs(log_prob_path).max() > 1e-3
    assert np.abs(value_path).max() > 1e-3


def test_gene_negative_binomial_equals_gamma_poisson_and_scipy():
    """Per-gene θ and per-cell counts against a particle axis of rates: the value is NumPyro's
    GammaPoisson.log_prob and SciPy's NB log-pmf (float64) with n = θ, p = r / (1 + r)."""
    rng = np.random.default_rng(0)
    P, B, G = 3, 4, 6
    theta = rng.gamma(2.0, 1.0, G).astype(np.float32)
    rate = rng.gamma(1.0, 1.0, (P, B, G)).astype(np.float32)
    counts = rng.poisson(3.0, (B, G)).astype(np.float32)
    d = GeneNegativeBinomial(jnp.asarray(theta), jnp.asarray(rate))
    assert d.batch_shape == (P, B, G)
    ours = np.asarray(d.log_prob(counts))
    numpyro_value = dist.GammaPoisson(np.broadcast_to(theta, rate.shape), rate).log_prob(counts)
    np.testing.assert_allclose(ours, numpyro_value, rtol=1e-5, atol=1e-5)
    expected = nbinom.logpmf(
        counts, theta.astype(np.float64), rate / (1.0 + rate.astype(np.float64))
    )
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)
    sample = d.sample(jax.random.key(0), (2,))
    assert sample.shape == (2, P, B, G)
