"""Negative binomial arithmetic of the `library_nb` head (docs/method.md#networks): lgamma and
digamma for positive arguments, and the per-particle part of the log-pmf with a hand-written
backward pass.

The head computes ρ = softmax(z) over genes, a = ℓρ + ε and r = max(θ / a, r_min), and scores
counts x with log p(x) = C(x, θ) − θ log(1 + 1/r) − x log(1 + r), where
C(x, θ) = lgamma(x + θ) − lgamma(θ) − lgamma(x + 1) depends on the cell and gene only.

Speed (benchmarks/bench_train_step.py): differentiated by JAX, the rate part goes through
softmax, divisions and two log1p's and their transposes, each an XLA fusion that makes a pass
over the (particle, cell, gene) arrays. Its gradient has a closed form, so `nb_rate_log_prob`
carries a `jax.custom_vjp` with one reduction over genes. Where r is unclamped (r = θ / a), with
c the cotangent of an element and d = a (θ + a):

    ∂/∂μ = θ (x − a) / d
    ∂/∂θ = (a − x) a / d − log(1 + a/θ)
    ∂/∂z_g = ℓ ρ_g (c_g ∂/∂μ_g − S),  S = Σ_h ρ_h c_h ∂/∂μ_h   (the softmax Jacobian product)
    ∂/∂ℓ = S

Where r is clamped to r_min, r is a constant: ∂/∂μ = 0 and ∂/∂θ = −log(1 + 1/r_min), the
gradients JAX gives for `jnp.maximum` off its tie. XLA's `lgamma` and `digamma` handle negative
arguments by reflection and sum a Lanczos series with eight divisions, and XLA stores the
shared pieces of the two as separate arrays; C needs positive arguments only.
"""

import math
from functools import partial

import jax
import jax.numpy as jnp

SHIFT = 8  # arguments below are raised by SHIFT through Γ(z + n) = Γ(z) z (z+1) … (z+n−1)
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _shift_up(z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(z < SHIFT, w, q′, q) with w = z + SHIFT where z < SHIFT (else z), q = ∏ₖ (z + k) for
    k < SHIFT and q′ its derivative, so Σₖ 1/(z + k) = q′/q: one division, not SHIFT. Where
    z ≥ SHIFT the product is of 1 + k (unused; it keeps q finite for any z)."""
    small = z < SHIFT
    zc = jnp.where(small, z, 1.0)
    dq, q = jnp.zeros_like(z), jnp.ones_like(z)
    for k in range(SHIFT):
        dq = dq * (zc + k) + q
        q = q * (zc + k)
    return small, jnp.where(small, z + SHIFT, z), dq, q


def stirling_correction(w: jax.Array) -> jax.Array:
    """δ(w) = log Γ(w) − (w − ½) log w + w − ½ log 2π ≈ 1/(12w) − 1/(360w³) + 1/(1260w⁵), the
    tail of Stirling's series (truncation error below 1/(1680 w⁷)); also log w! minus its
    Stirling form. For w ≥ SHIFT."""
    r = 1.0 / w
    r2 = r * r
    return r * (1.0 / 12.0 - r2 * (1.0 / 360.0 - r2 / 1260.0))


@jax.custom_jvp
def lgamma_positive(z: jax.Array) -> jax.Array:
    """log Γ(z) for z > 0: Stirling's series at w = z (+ SHIFT below SHIFT), truncation error
    below 1/(1680 w⁷) < 1e-9; float32 error within a few 1e-6 of the value, like `lax.lgamma`."""
    small, w, _, q = _shift_up(z)
    stirling = (w - 0.5) * jnp.log(w) - w + HALF_LOG_2PI + stirling_correction(w)
    return stirling - jnp.where(small, jnp.log(q), 0.0)


def digamma_positive(z: jax.Array) -> jax.Array:
    """ψ(z) = d log Γ(z)/dz for z > 0, by the asymptotic series at w as `lgamma_positive`."""
    small, w, dq, q = _shift_up(z)
    r = 1.0 / w
    r2 = r * r
    series = r * (0.5 + r * (1.0 / 12.0 - r2 * (1.0 / 120.0 - r2 / 252.0)))
    return jnp.log(w) - series - jnp.where(small, dq / q, 0.0)


@lgamma_positive.defjvp
def _lgamma_positive_jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    return lgamma_positive(z), digamma_positive(z) * dz


def _sum_to_shape(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Sum `x` over the axes along which an array of `shape` was broadcast to x.shape."""
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and x.shape[lead + i] != 1
    )
    return jnp.sum(x, axis=axes).reshape(shape)


@partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def nb_rate_log_prob(
    logits: jax.Array,
    library: jax.Array,
    theta: jax.Array,
    counts: jax.Array,
    mean_offset: float,
    rate_floor: float,
) -> jax.Array:
    """−θ log(1 + 1/r) − x log(1 + r) per element, r = max(θ / (ℓ softmax(z) + ε), r_min).

    logits z: (..., G); library ℓ: logits.shape[:-1]; theta θ > 0: broadcastable to (G,);
    counts x: broadcastable to logits.shape. Returns logits.shape. The counts are data: their
    cotangent is zero.
    """
    return _forward(logits, library, theta, counts, mean_offset, rate_floor)[0]


def _forward(logits, library, theta, counts, mean_offset, rate_floor):
    """The value, written so that every division and log1p has one use (XLA then fuses them
    into one pass), and the residuals: exp(z − max z) and 1/Σ of it, so ρ is their product."""
    expo = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
    inv_norm = 1.0 / jnp.sum(expo, axis=-1, keepdims=True)
    a = library[..., None] * (expo * inv_norm) + mean_offset
    inv_rate = jnp.minimum(a * (1.0 / theta), 1.0 / rate_floor)  # 1/r
    rate = jnp.maximum(theta / a, rate_floor)
    terms = -theta * jnp.log1p(inv_rate) - counts * jnp.log1p(rate)
    return terms, (expo, inv_norm, library, theta, counts)


def _backward(mean_offset, rate_floor, residuals, cotangent):
    """Cotangents of (logits, library, theta, counts) in three passes over the elements: S,
    the logits (ending in a division, so XLA stores them once rather than recomputing them
    inside the transpose the weight gradient reads) and θ."""
    expo, inv_norm, library, theta, counts = residuals
    scale = library[..., None]
    rho = expo * inv_norm
    a = scale * rho + mean_offset
    unclamped = theta >= rate_floor * a
    d = a * (theta + a)
    num = jnp.where(unclamped, cotangent * theta * (counts - a), 0.0)  # c ∂/∂μ = num / d
    s = jnp.sum(rho * num / d, axis=-1, keepdims=True)
    d_logits = scale * rho * (num - s * d) / d
    inv_rate = jnp.minimum(a * (1.0 / theta), 1.0 / rate_floor)
    d_theta_elem = jnp.where(unclamped, (a - counts) * a / d, 0.0) - jnp.log1p(inv_rate)
    d_theta = _sum_to_shape(cotangent * d_theta_elem, jnp.shape(theta))
    return d_logits, s[..., 0], d_theta, None


nb_rate_log_prob.defvjp(_forward, _backward)
