"""The negative binomial arithmetic of the library_nb head (`cradle_jax.models.nb_math`): lgamma
and digamma for positive arguments vs SciPy, and the hand-written backward pass of
`LogitsNegativeBinomial.log_prob` vs JAX's autodiff of the plain formula (float64 reference)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import digamma, gammaln
from scipy.stats import nbinom

from cradle_jax.models.distributions import GeneNegativeBinomial, LogitsNegativeBinomial
from cradle_jax.models.nb_math import digamma_positive, lgamma_positive

OFFSET, FLOOR = 1e-4, 1e-6  # the head's ε and r_min
P, B, G = 3, 4, 6
# per gene: θ tiny (its rates clamp to r_min), small, 1, large, huge
LOG_THETA = np.log([1e-7, 0.05, 1.0, 3.0, 30.0, 1e4])


def arguments() -> np.ndarray:
    z = np.concatenate([np.logspace(-20, 6, 2000), np.arange(1, 3000.0), np.arange(3000) + 0.5])
    return z.astype(np.float32)


def nb_inputs(seed: int = 0) -> tuple[np.ndarray, ...]:
    """Logits (P, B, G), library (P, B) with an empty cell, counts (B, G) with zeros and 2000."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, (P, B, G))
    library = np.broadcast_to(np.array([0.0, 3.0, 250.0, 1e4]), (P, B)).copy()
    counts = rng.poisson(3.0, (B, G)).astype(np.float64)
    counts[:, 1] = 0.0
    counts[3, 2] = 2000.0
    return logits, library, LOG_THETA.copy(), counts


def plain_log_prob(logits, library, log_theta, counts):
    """The head and log-pmf as written before the hand-written backward pass: autodiff's path."""
    theta = jnp.exp(log_theta)
    mean = library[..., None] * jax.nn.softmax(logits, axis=-1)
    rate = jnp.maximum(theta / (mean + OFFSET), FLOOR)
    per_cell_gene = (
        jax.lax.lgamma(counts + theta) - jax.lax.lgamma(theta) - jax.lax.lgamma(counts + 1.0)
    )
    return per_cell_gene - theta * jnp.log1p(1.0 / rate) - counts * jnp.log1p(rate)


def ours_log_prob(logits, library, log_theta, counts):
    d = LogitsNegativeBinomial(logits, library, jnp.exp(log_theta), OFFSET, FLOOR)
    return d.log_prob(counts)


def cotangent(seed: int = 1) -> np.ndarray:
    """Per-element weights as NumPyro's scale and mask give them, with a masked cell and a
    masked particle of another cell (zeros)."""
    ct = np.random.default_rng(seed).uniform(0.1, 2.0, (P, B, G))
    ct[:, 0] = 0.0
    ct[1, 2] = 0.0
    return ct


def vjp(fn, args, ct):
    value, pullback = jax.vjp(lambda *a: fn(*a, args[3]), *args[:3])
    return value, pullback(ct)


def test_lgamma_and_digamma_positive_match_scipy_in_float32():
    z = arguments()
    ref_lgamma, ref_digamma = gammaln(z.astype(np.float64)), digamma(z.astype(np.float64))
    scale_l, scale_d = np.maximum(1.0, np.abs(ref_lgamma)), np.maximum(1.0, np.abs(ref_digamma))
    ours_l = np.asarray(jax.jit(lgamma_positive)(z), np.float64)
    ours_d = np.asarray(jax.jit(digamma_positive)(z), np.float64)
    # XLA's lgamma is within 2e-6 of the scale here; the shifted Stirling form within 4e-6
    assert np.max(np.abs(ours_l - ref_lgamma) / scale_l) < 5e-6
    assert np.max(np.abs(ours_d - ref_digamma) / scale_d) < 1e-6


def test_lgamma_and_digamma_positive_series_error_in_float64():
    """In float64 only the truncation of the series is left: below 1/(1680·8⁷) ≈ 3e-10."""
    with jax.enable_x64(True):
        z = np.concatenate([np.logspace(-30, 8, 3000), np.arange(1, 50.0) + 0.25])
        scale_l, scale_d = np.maximum(1.0, np.abs(gammaln(z))), np.maximum(1.0, np.abs(digamma(z)))
        assert np.max(np.abs(np.asarray(lgamma_positive(z)) - gammaln(z)) / scale_l) < 5e-10
        assert np.max(np.abs(np.asarray(digamma_positive(z)) - digamma(z)) / scale_d) < 5e-10


def test_lgamma_positive_derivative_is_digamma():
    z = jnp.asarray(arguments())
    np.testing.assert_allclose(
        jax.vmap(jax.grad(lgamma_positive))(z), jax.jit(digamma_positive)(z), rtol=1e-6, atol=1e-6
    )


def test_log_prob_equals_scipy_and_the_plain_formula():
    with jax.enable_x64(True):
        logits, library, log_theta, counts = nb_inputs()
        ours = np.asarray(ours_log_prob(logits, library, log_theta, counts))
        theta = np.exp(log_theta)
        mean = library[..., None] * jax.nn.softmax(logits, axis=-1)
        rate = np.maximum(theta / (np.asarray(mean) + OFFSET), FLOOR)
        assert np.any(rate == FLOOR)  # the clamp is exercised
        expected = nbinom.logpmf(counts, theta, rate / (1.0 + rate))
        np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-9)
    logits32, library32, log_theta32, counts32 = (a.astype(np.float32) for a in nb_inputs())
    ours32 = np.asarray(ours_log_prob(logits32, library32, log_theta32, counts32))
    plain32 = np.asarray(plain_log_prob(logits32, library32, log_theta32, counts32))
    # float32 rounding of lgamma: a few ulps of lgamma(x + θ) and lgamma(x + 1)
    lgamma_ulps = (
        8
        * np.finfo(np.float32).eps
        * (np.abs(gammaln(counts + theta)) + gammaln(counts + 1) + np.abs(gammaln(theta)))
    )
    assert np.all(np.abs(ours32 - expected) <= 1e-5 * (1 + np.abs(expected)) + lgamma_ulps)
    assert np.all(np.abs(plain32 - expected) <= 1e-5 * (1 + np.abs(expected)) + lgamma_ulps)


def test_distribution_is_the_gene_negative_binomial_of_the_rate():
    logits, library, log_theta, counts = (a.astype(np.float32) for a in nb_inputs())
    theta = np.exp(log_theta)
    d = LogitsNegativeBinomial(logits, library, theta, OFFSET, FLOOR)
    mean = library[..., None] * jax.nn.softmax(logits, axis=-1)
    rate = jnp.maximum(theta / (mean + OFFSET), FLOOR)
    reference = GeneNegativeBinomial(theta, rate)
    assert d.batch_shape == (P, B, G)
    np.testing.assert_array_equal(d.rate, reference.rate)
    np.testing.assert_array_equal(d.mean, reference.mean)
    np.testing.assert_array_equal(d.variance, reference.variance)
    np.testing.assert_allclose(d.log_prob(counts), reference.log_prob(counts), rtol=1e-6, atol=2e-5)
    assert d.sample(jax.random.key(0), (2,)).shape == (2, P, B, G)
    flat, tree = jax.tree.flatten(d)
    np.testing.assert_array_equal(
        jax.tree.unflatten(tree, flat).log_prob(counts), d.log_prob(counts)
    )


def test_gradients_equal_autodiff_of_the_plain_formula_in_float64():
    """Logits, library and log θ, with zero cotangents, empty cells, x = 0, x = 2000 and θ from
    1e-7 (clamped rates) to 1e4."""
    with jax.enable_x64(True):
        args, ct = nb_inputs(), cotangent()
        value, grads = vjp(ours_log_prob, args, ct)
        plain_value, plain_grads = vjp(plain_log_prob, args, ct)
        # up to the series truncation of lgamma and digamma (≈ 3e-10 per term)
        np.testing.assert_allclose(value, plain_value, rtol=0, atol=2e-9)
        for ours, plain in zip(grads, plain_grads, strict=True):
            np.testing.assert_allclose(ours, plain, rtol=1e-9, atol=1e-9 * np.abs(plain).max())
        d_logits, d_library, _ = grads
        assert np.all(np.asarray(d_logits)[:, 0] == 0.0)  # a masked cell gets exactly zero
        assert np.all(np.asarray(d_library)[:, 0] == 0.0)
        assert np.all(np.asarray(d_logits)[1, 2] == 0.0)


def test_float32_gradients_are_as_close_to_float64_as_autodiffs():
    args, ct = nb_inputs(), cotangent()
    with jax.enable_x64(True):
        _, reference = vjp(plain_log_prob, args, ct)
    args32 = tuple(a.astype(np.float32) for a in args)
    _, ours = vjp(ours_log_prob, args32, ct.astype(np.float32))
    _, plain = vjp(plain_log_prob, args32, ct.astype(np.float32))
    for o, p, r in zip(ours, plain, reference, strict=True):
        r = np.asarray(r)
        err_ours, err_plain = np.abs(np.asarray(o) - r).max(), np.abs(np.asarray(p) - r).max()
        assert np.all(np.isfinite(o))
        assert err_ours <= max(2.0 * err_plain, 1e-6 * np.abs(r).max())


@pytest.mark.parametrize("counts_per_particle", [False, True])
def test_jit_and_vmap(counts_per_particle):
    logits, library, log_theta, counts = (a.astype(np.float32) for a in nb_inputs())
    if counts_per_particle:
        counts = np.broadcast_to(counts, (P, B, G))

    def loss(logits, library, log_theta):
        return jnp.sum(cotangent() * ours_log_prob(logits, library, log_theta, counts))

    grad = jax.grad(loss, argnums=(0, 1, 2))
    stacked = (np.stack([logits, logits + 1.0]), np.stack([library, 2.0 * library]))
    batched = jax.jit(jax.vmap(grad, in_axes=(0, 0, None)))(*stacked, log_theta)
    for i in range(2):
        single = grad(stacked[0][i], stacked[1][i], log_theta)
        for b, s in zip(batched, single, strict=True):
            # float32: the log θ gradient at θ = 1e4 is θ (ψ(x + θ) − ψ(θ) + …), ill-conditioned
            np.testing.assert_allclose(b[i], s, rtol=1e-4, atol=1e-6 * np.abs(s).max())
