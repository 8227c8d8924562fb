"""One try per element at Gamma(α, 1) and Poisson(λ), in float32: the value, or a sentinel where
the try is not accepted (log G = +∞, count = REJECTED).

- Gamma(α, 1): Marsaglia & Tsang (2000), "A simple method for generating gamma variables",
  ACM TOMS 26(3), 363–372. For α < 1, Gamma(α) = Gamma(α + 1)·W^(1/α) (their section 6), in log
  space so that tiny α cannot underflow to log 0. W is the acceptance uniform recycled: given
  that u < h(x) was accepted, u / h(x) is uniform on (0, 1) and independent of x.
- Poisson(λ), λ < 10: inversion, a sequential search of the pmf on 0 … 36 (P(X > 36) ≤ 5e-11
  at λ = 10, far below the 2⁻²³ resolution of a float32 uniform); a uniform beyond the float32
  sum of those 37 terms (possible only by rounding) is rejected, so the search samples the
  truncated pmf renormalised by that sum.
- Poisson(λ), λ ≥ 10: Hörmann (1993), "The transformed rejection method for generating Poisson
  random variables" (PTRS), Insurance: Mathematics and Economics 12(1), 39–45, with the
  log-pmf in a Stirling form that keeps its float32 precision at large λ.

A try returns one array per quantity, with the sentinel for "not accepted": a second output of
the same computation made XLA compute it twice.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cradle_jax.models.nb_math import stirling_correction
from cradle_jax.models.sampling.words import open_uniform, standard_normal

INVERSION_LIMIT = 10.0  # Poisson(λ) by inversion below, by PTRS from here (Hörmann's range)
INVERSION_STEPS = 36  # the inversion searches 0 … 36
MAX_POISSON_RATE = 2.0**23  # λ is capped here: counts near 2²⁴ are not float32 integers
REJECTED = -1.0  # the count of a try that was not accepted

_LOG_FACTORIALS = np.array([np.sum(np.log(np.arange(1, k + 1))) for k in range(10)], np.float32)


def gamma_try(normal_words: jax.Array, uniform_words: jax.Array, alpha: jax.Array) -> jax.Array:
    """log G for one Marsaglia–Tsang try at Gamma(α, 1) per element, +∞ where it is rejected.

    With d = α − 1/3 (α + 2/3 if α < 1), c = 1/√(9d), x ~ N(0, 1), v = (1 + cx)³: accept iff
    cx > −1 and log u < h = x²/2 + d(1 − v + log v); then G = d·v, times W^(1/α) with
    W = u·e^(−h) if α < 1. v − 1 and log v are formed from cx (log1p) so that d(1 − v + log v)
    keeps its precision at large d.
    """
    boosted = alpha < 1.0
    d = jnp.where(boosted, alpha + 1.0, alpha) - 1.0 / 3.0
    x = standard_normal(normal_words)
    cx = lax.rsqrt(9.0 * d) * x
    positive = cx > -1.0
    log_v = 3.0 * jnp.log1p(jnp.where(positive, cx, 0.0))
    v_minus_1 = cx * (3.0 + cx * (3.0 + cx))
    log_h = 0.5 * x * x + d * (log_v - v_minus_1)
    log_u = jnp.log(open_uniform(uniform_words))
    log_gamma = jnp.log(d) + log_v + jnp.where(boosted, (log_u - log_h) / alpha, 0.0)
    return jnp.where(positive & (log_u < log_h), log_gamma, jnp.inf)


def poisson_try(u_words: jax.Array, v_words: jax.Array, rate: jax.Array, ptrs: bool = True):
    """One try at Poisson(λ) per element: inversion for λ < 10, PTRS for λ ≥ 10 (REJECTED
    there without `ptrs`). The count, or REJECTED."""
    u = open_uniform(u_words)
    by_inversion = poisson_inversion(u, jnp.minimum(rate, INVERSION_LIMIT))
    if ptrs:
        large = ptrs_try(u, open_uniform(v_words), jnp.maximum(rate, INVERSION_LIMIT))
    else:
        large = REJECTED
    return jnp.where(rate < INVERSION_LIMIT, by_inversion, large)


def poisson_inversion(u: jax.Array, rate: jax.Array) -> jax.Array:
    """The first k ∈ {0 … 36} with u ≤ F(k), F the Poisson(λ) cdf summed in float32; REJECTED
    if u > F(36)."""
    p = jnp.exp(-rate)
    cdf = p
    count = jnp.zeros_like(u)
    for k in range(1, INVERSION_STEPS + 1):
        count = count + (cdf < u).astype(jnp.float32)
        p = p * (rate * (1.0 / k))
        cdf = cdf + p
    return jnp.where(u <= cdf, count, REJECTED)


def ptrs_try(u: jax.Array, v: jax.Array, rate: jax.Array) -> jax.Array:
    """One try of Hörmann's PTRS at Poisson(λ), λ ≥ 10 (his constants), from two uniforms: the
    count, or REJECTED."""
    b = 0.931 + 2.53 * jnp.sqrt(rate)
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2.0)
    u = u - 0.5
    us = 0.5 - jnp.abs(u)
    k = jnp.floor((2.0 * a / us + b) * u + rate + 0.43)
    squeeze = (us >= 0.07) & (v <= v_r)
    bound = jnp.log(v * inv_alpha / (a / (us * us) + b))
    in_range = (k >= 0.0) & ~((us < 0.013) & (v > us))
    accepted = squeeze | (in_range & (bound <= poisson_log_pmf(k, rate)))
    return jnp.where(accepted, k, REJECTED)


def poisson_log_pmf(k: jax.Array, rate: jax.Array) -> jax.Array:
    """log(λᵏe^(−λ)/k!) for integers k ≥ 0 (values at k < 0 are meaningless).

    For k ≥ 10 as (k − λ) − k·log1p((k − λ)/λ) − ½log(2πk) − δ(k), δ the tail of Stirling's
    series (`nb_math.stirling_correction`, error < 1e-10): each term is of the size of the
    result, where k log λ − λ − lgamma(k + 1) cancels numbers of size k log k (a float32 error
    of 0.01 at λ ≈ 10⁴). For k < 10 from a table of log k!.
    """
    large = jnp.maximum(k, 10.0)
    diff = large - rate
    stirling = (
        diff
        - large * jnp.log1p(diff / rate)
        - 0.5 * jnp.log(2.0 * np.pi * large)
        - stirling_correction(large)
    )
    small = jnp.clip(k, 0.0, 9.0)
    log_factorial = jnp.asarray(_LOG_FACTORIALS)[small.astype(jnp.int32)]
    direct = small * jnp.log(rate) - rate - log_factorial
    return jnp.where(k >= 10.0, stirling, direct)


def capped_rate(log_rate: jax.Array) -> jax.Array:
    """λ = exp(log λ): 0 at log λ = −∞, at most MAX_POISSON_RATE."""
    return jnp.exp(jnp.minimum(log_rate, np.log(MAX_POISSON_RATE)))
