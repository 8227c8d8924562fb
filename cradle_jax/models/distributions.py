"""The straight-through relaxed Bernoulli of the mask guide q(M) (SPEC §2.2, A2).

Samples are hard 0/1 values whose gradient is that of the relaxed (binary Concrete) sample, and
`log_prob` is the exact Bernoulli log-pmf, so NumPyro's ELBO scores the hard sample as the
original does: log Bern(m; π) − log Bern(m; σ(φ)), with gradients reaching φ both through
log q and through m.
"""

from typing import ClassVar

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution, constraints


def sanitize_logits(logits: jax.Array) -> jax.Array:
    """NaN and ±inf logits → 0 (the original's `sanitize_tensor` on the mask logits, §2.1)."""
    return jnp.where(jnp.isfinite(logits), logits, 0.0)


class StraightThroughBernoulli(Distribution):
    """Relaxed Bernoulli with straight-through rounding (§2.2); log_prob is the EXACT Bernoulli.

    logits: any shape (the batch shape); temperature τ: a scalar or broadcastable to the logits.
    A sample with key k and sample_shape S draws u = jax.random.uniform(k, S + batch_shape),
    clamps it to [ε, 1−ε] (ε = float32 eps) and returns, with p = clip(σ(φ), ε, 1−ε),

        soft = σ((logit p + log u − log(1−u)) / τ)
        hard = soft + stop_gradient(round(soft) − soft)

    i.e. exactly 0.0 or 1.0 forward, ∂hard/∂soft = 1 backward. round(soft) = 1 iff
    logit p + Logistic noise > 0, so the forward value is Bernoulli(p) for every τ.

    The support is declared `unit_interval` (which holds the float values 0 and 1) rather than
    `boolean`: the site is a reparametrised one, and a discrete support would make SVI warn that
    Trace_ELBO cannot handle discrete latent variables.
    """

    arg_constraints: ClassVar = {"logits": constraints.real}
    support = constraints.unit_interval
    reparametrized_params: ClassVar = ["logits"]
    pytree_data_fields = ("logits", "temperature")

    def __init__(self, logits, temperature=1.0, validate_args=None):
        logits = jnp.asarray(logits)
        logits = logits.astype(jnp.result_type(logits.dtype, jnp.float32))
        self.logits = sanitize_logits(logits)
        self.temperature = temperature
        super().__init__(batch_shape=jnp.shape(logits), validate_args=validate_args)

    @property
    def has_rsample(self) -> bool:
        return True

    def sample(self, key, sample_shape=()):
        eps = jnp.finfo(jnp.float32).eps
        shape = tuple(sample_shape) + self.batch_shape
        u = jnp.clip(jax.random.uniform(key, shape, self.logits.dtype), eps, 1.0 - eps)
        p = jnp.clip(jax.nn.sigmoid(self.logits), eps, 1.0 - eps)
        logit_p = jnp.log(p) - jnp.log1p(-p)
        soft = jax.nn.sigmoid((logit_p + jnp.log(u) - jnp.log1p(-u)) / self.temperature)
        return soft + jax.lax.stop_gradient(jnp.round(soft) - soft)

    def rsample(self, key, sample_shape=()):
        return self.sample(key, sample_shape)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return value * jax.nn.log_sigmoid(self.logits) + (1.0 - value) * jax.nn.log_sigmoid(
            -self.logits
        )

    @property
    def probs(self) -> jax.Array:
        return jax.nn.sigmoid(self.logits)

    @property
    def mean(self) -> jax.Array:
        return self.probs

    @property
    def variance(self) -> jax.Array:
        return self.probs * (1.0 - self.probs)

    @property
    def mode(self) -> jax.Array:
        """1[σ(φ) > 0.5] as 0.0/1.0, the dtype of the samples."""
        return (self.probs > 0.5).astype(self.logits.dtype)
