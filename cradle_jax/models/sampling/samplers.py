"""The public samplers: each element's state, its try, and `run` over the whole array.

The Gamma–Poisson is X ~ Poisson(G / r), G ~ Gamma(θ, 1). Its first try (on all elements) runs
only the inversion, leaving the elements with λ ≥ 10 unfinished: the retries, on a fraction of
the elements, run PTRS.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from cradle_jax.models.sampling.retries import Params, run
from cradle_jax.models.sampling.tries import (
    MAX_POISSON_RATE,
    REJECTED,
    capped_rate,
    gamma_try,
    poisson_try,
)
from cradle_jax.models.sampling.words import Words


class GammaState(NamedTuple):
    log_gamma: jax.Array  # +∞ until accepted

    @property
    def done(self) -> jax.Array:
        return self.log_gamma < jnp.inf

    def finished_where(self, mask: jax.Array) -> "GammaState":
        return GammaState(jnp.where(mask, 0.0, self.log_gamma))


class PoissonState(NamedTuple):
    count: jax.Array  # REJECTED until accepted

    @property
    def done(self) -> jax.Array:
        return self.count >= 0.0

    def finished_where(self, mask: jax.Array) -> "PoissonState":
        return PoissonState(jnp.where(mask, 0.0, self.count))


class GammaPoissonState(NamedTuple):
    log_gamma: jax.Array  # +∞ until the gamma try is accepted
    count: jax.Array  # REJECTED until the Poisson try (after it) is accepted

    @property
    def done(self) -> jax.Array:
        return self.count >= 0.0

    def finished_where(self, mask: jax.Array) -> "GammaPoissonState":
        return GammaPoissonState(self.log_gamma, jnp.where(mask, 0.0, self.count))


def _keep(old: jax.Array, done: jax.Array, new: jax.Array) -> jax.Array:
    return jnp.where(done, old, new)


def gamma_attempt(words: Words, params: Params, s: GammaState) -> GammaState:
    (alpha,) = params
    return GammaState(_keep(s.log_gamma, s.done, gamma_try(words[0], words[1], alpha)))


def poisson_attempt(words: Words, params: Params, s: PoissonState) -> PoissonState:
    (rate,) = params
    return PoissonState(_keep(s.count, s.done, poisson_try(words[2], words[3], rate)))


def gamma_poisson_attempt(
    words: Words, params: Params, s: GammaPoissonState, ptrs: bool = True
) -> GammaPoissonState:
    """A gamma try where G is not accepted yet, then a Poisson(G / r) try where it is (λ ≥ 10
    left for later without `ptrs`). log G is materialised before the Poisson try reads it."""
    alpha, log_rate = params
    gamma_done = s.log_gamma < jnp.inf
    log_gamma = _keep(s.log_gamma, gamma_done, gamma_try(words[0], words[1], alpha))
    log_gamma = lax.optimization_barrier(log_gamma)
    count = poisson_try(words[2], words[3], capped_rate(log_gamma - log_rate), ptrs)
    count = jnp.where(log_gamma < jnp.inf, count, REJECTED)
    return GammaPoissonState(log_gamma, _keep(s.count, s.done, count))


def _flat(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return jnp.broadcast_to(jnp.asarray(x, jnp.float32), shape).reshape(-1)


def sample_gamma(key: jax.Array, concentration: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Gamma(α, 1) samples of `shape` (α > 0 broadcast to it), float32."""
    alpha = _flat(concentration, shape)
    state = GammaState(jnp.full_like(alpha, jnp.inf))
    state = run(key, gamma_attempt, gamma_attempt, (alpha,), state)
    return jnp.exp(state.log_gamma).reshape(shape)


def sample_poisson(key: jax.Array, rate: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Poisson(λ) samples of `shape` (λ ≥ 0 broadcast to it, capped at 2²³), float32."""
    lam = jnp.minimum(_flat(rate, shape), MAX_POISSON_RATE)
    state = PoissonState(jnp.full_like(lam, REJECTED))
    state = run(key, poisson_attempt, poisson_attempt, (lam,), state)
    return jnp.maximum(state.count, 0.0).reshape(shape)


def sample_gamma_poisson(
    key: jax.Array, concentration: jax.Array, rate: jax.Array, shape: tuple[int, ...]
) -> jax.Array:
    """Gamma–Poisson(θ, r) samples of `shape`: NB with mean θ/r and variance θ/r·(1 + 1/r).

    θ > 0 and r > 0 broadcast to `shape`; r = ∞ (mean 0) gives 0. float32 counts.
    """
    alpha = _flat(concentration, shape)
    log_rate = jnp.log(_flat(rate, shape))
    state = GammaPoissonState(jnp.full_like(alpha, jnp.inf), jnp.full_like(alpha, REJECTED))

    def first(words: Words, params: Params, s: GammaPoissonState) -> GammaPoissonState:
        return gamma_poisson_attempt(words, params, s, ptrs=False)

    state = run(key, first, gamma_poisson_attempt, (alpha, log_rate), state)
    return jnp.maximum(state.count, 0.0).reshape(shape)
