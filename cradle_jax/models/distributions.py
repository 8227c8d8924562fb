"""Custom distributions: the straight-through relaxed Bernoulli of the mask guide q(M)
(docs/method.md#straight-through-masks) and the per-gene negative binomial of the `library_nb`
decoder head (docs/method.md#networks).

Straight-through samples are hard 0/1 values whose gradient is that of the relaxed (binary
Concrete) sample, and `log_prob` is the exact Bernoulli log-pmf, so NumPyro's ELBO scores the hard
sample as the original does: log Bern(m; π) − log Bern(m; σ(φ)), with gradients reaching φ both
through log q and through m.
"""

from typing import ClassVar

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution, GammaPoisson, constraints
from numpyro.distributions.util import validate_sample

from cradle_jax.models.nb_math import lgamma_positive, nb_rate_log_prob
from cradle_jax.models.sampling import sample_gamma_poisson


def sanitize_logits(logits: jax.Array) -> jax.Array:
    """NaN and ±inf logits → 0 (the original's `sanitize_tensor` on the mask logits)."""
    return jnp.where(jnp.isfinite(logits), logits, 0.0)


class StraightThroughBernoulli(Distribution):
    """Relaxed Bernoulli with straight-through rounding; log_prob is the EXACT Bernoulli.

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


class GeneNegativeBinomial(GammaPoisson):
    """Gamma–Poisson(θ, r) with one concentration θ per gene (the last axis), as the
    `library_nb` head produces it (docs/method.md#networks); moments are NumPyro's
    GammaPoisson's, samples those of the exact vectorised `sampling.sample_gamma_poisson`
    (float32 counts).

    log p(x) = lgamma(x + θ) − lgamma(θ) − lgamma(x + 1) − θ log(1 + 1/r) − x log(1 + r),
    the value of `GammaPoisson.log_prob` (which writes the lgamma part as a Beta function, a long
    series per element that took half of the train step). Since θ is per gene and x per cell,
    the lgamma part is computed once per (cell, gene), not per particle: only the two logs depend
    on the particle's rate r. This is the form scvi-tools uses (`log_nb_positive`); in float32
    its error is that of rounding lgamma(x + 1), about 1e-7·x·log x (4e-4 at x = 2000).
    """

    pytree_data_fields = ("gene_concentration",)

    def __init__(self, gene_concentration: jax.Array, rate: jax.Array, validate_args=None):
        self.gene_concentration = gene_concentration
        super().__init__(
            jnp.broadcast_to(gene_concentration, jnp.shape(rate)), rate, validate_args=validate_args
        )

    def sample(self, key, sample_shape=()):
        """Counts of shape sample_shape + batch_shape, float32: the Gamma-then-Poisson draw of
        NumPyro's `GammaPoisson.sample`, exact and much faster on a CPU
        (`cradle_jax.models.sampling`, benchmarks/README.md#sampling)."""
        shape = tuple(sample_shape) + self.batch_shape
        return sample_gamma_poisson(key, self.concentration, self.rate, shape)

    @validate_sample
    def log_prob(self, value):
        theta = self.gene_concentration
        per_cell_gene = (
            lgamma_positive(value + theta) - lgamma_positive(theta) - lgamma_positive(value + 1.0)
        )
        return per_cell_gene + self.rate_log_prob(value)

    def rate_log_prob(self, value: jax.Array) -> jax.Array:
        """−θ log(1 + 1/r) − x log(1 + r), the part of log p(x) computed per element of r (per
        particle); `LogitsNegativeBinomial` differentiates it by hand."""
        theta, rate = self.gene_concentration, self.rate
        return -theta * jnp.log1p(1.0 / rate) - value * jnp.log1p(rate)


class LogitsNegativeBinomial(GeneNegativeBinomial):
    """`GeneNegativeBinomial` made from gene logits z, library ℓ and per-gene θ as the
    `library_nb` head makes it: r = max(θ / (ℓ softmax(z) + ε), r_min). Samples and moments
    are those of the rate; `log_prob` has the same value, its per-particle part computed and
    differentiated by `nb_math.nb_rate_log_prob` (four passes over the elements, not a dozen).
    """

    pytree_data_fields = ("logits", "library")
    pytree_aux_fields = ("mean_offset", "rate_floor")

    def __init__(
        self,
        logits: jax.Array,
        library: jax.Array,
        gene_concentration: jax.Array,
        mean_offset: float,
        rate_floor: float,
        validate_args=None,
    ):
        self.logits, self.library = logits, library
        self.mean_offset, self.rate_floor = mean_offset, rate_floor
        mean = library[..., None] * jax.nn.softmax(logits, axis=-1)
        rate = jnp.maximum(gene_concentration / (mean + mean_offset), rate_floor)
        super().__init__(gene_concentration, rate, validate_args=validate_args)

    def rate_log_prob(self, value: jax.Array) -> jax.Array:
        return nb_rate_log_prob(
            self.logits,
            self.library,
            self.gene_concentration,
            value,
            self.mean_offset,
            self.rate_floor,
        )
