"""Pieces shared by the model families: site weights, encoder input, weighted sample sites,
and the sparse perturbation embedding dᵀ(M⊙E) of CRADLE and SAMS-VAE (docs/method.md).

Shapes: P particles, B cells, G genes, T perturbations, Q QC columns, L latent dims. Every site
carries the particle axis first.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.contrib.module import flax_module

from cradle_jax.models.config import ModelConfig
from cradle_jax.models.distributions import StraightThroughBernoulli
from cradle_jax.models.networks import LikelihoodMLP


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class SiteWeights:
    """Per-site ELBO weights of one batch (already divided by P and the number of real cells).

    perturbation (T,): Σ_i w_i 1[D_it ≠ 0] / N^D_t, the plate reweighting of the
    perturbation-plated globals (M and E; SVAE+'s mask probabilities and masks;
    docs/method.md#plate-reweighting);
    qc (Q,): Σ_i w_i 1[qc_ij ≠ 0] / N^qc_j for A (each row by its own flag, not the original's
    fail-any: docs/decisions.md#qc-columns-each);
    cell (B,): w_i for the per-cell latent; reconstruction (B,): w_i times the α class weight
    (docs/method.md#class-weight; equal to `cell` for the families without an artifact path).
    """

    perturbation: jax.Array
    qc: jax.Array
    cell: jax.Array
    reconstruction: jax.Array

    @classmethod
    def unweighted(cls, cfg: ModelConfig, cell: jax.Array) -> "SiteWeights":
        """Weight 1 on every global site and `cell` (B,) on the per-cell sites (no plate
        reweighting, no α): for generation, encoding and the predictive IWELBO."""
        return cls(
            perturbation=jnp.ones(cfg.n_perturbations),
            qc=jnp.ones(cfg.n_qc),
            cell=cell,
            reconstruction=cell,
        )


def log_standardize(x: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """(log(1+x) − m)/s with the original's sanitising (NaN→1e-6, +inf→1e6, −inf→1e-6);
    docs/method.md#input-normalisation.

    A gene with zero training variance is divided by 1, not 0 (ours): training cells then get
    0 where the original gives 1e-6, and a validation or reference cell that expresses a gene
    no training cell does gets log(1+x) − m instead of 1e6, an input that would blow up the
    encoder.
    """
    z = (jnp.log1p(x) - mean) / jnp.where(std > 0, std, 1.0)
    return jnp.nan_to_num(z, nan=1e-6, posinf=1e6, neginf=1e-6)


def encoder_input(batch: dict, stats: dict) -> jax.Array:
    """The standardised counts, (B, G), without a particle axis: encoders take them as the first
    part of a split input, so their first layer multiplies them once per cell."""
    return log_standardize(batch["X"], stats["norm_mean"], stats["norm_std"])


def per_particle(q: dist.Normal, n_particles: int) -> dist.Normal:
    """A cell posterior computed once per cell, (B, L), repeated for every particle: (P, B, L)."""
    shape = (n_particles, *q.batch_shape)
    return dist.Normal(jnp.broadcast_to(q.loc, shape), jnp.broadcast_to(q.scale, shape))


class ObservedMask(dist.MaskedDistribution):
    """A mask for observed sites: log-density 0 where masked, the observed values left as they
    are. NumPyro's mask first replaces masked values by a default, which broadcasts the counts
    (B, G) over particles before the likelihood sees them, so the likelihood's per-(cell, gene)
    terms would run once per particle. Observed rows a mask guards (padding, zero-weight cells)
    hold valid counts, so nothing needs replacing."""

    def log_prob(self, value: jax.Array) -> jax.Array:
        return jnp.where(self._mask, self.base_dist.log_prob(value), 0.0)


def weighted_site(
    name: str, fn: dist.Distribution, weight: jax.Array, obs: jax.Array | None = None
) -> jax.Array:
    """A sample site whose log-density is scaled by `weight`; zero weights are masked, not
    scaled by 0, so padding cells and unobserved perturbations contribute nothing at all.
    An observed site is masked by `ObservedMask`, which leaves the observed values as they are."""
    positive = weight > 0
    with handlers.scale(scale=jnp.where(positive, weight, 1.0)):
        if obs is None:
            with handlers.mask(mask=positive):
                return numpyro.sample(name, fn)
        return numpyro.sample(name, ObservedMask(fn, positive), obs=obs)


def normal_mlp(name: str, cfg: ModelConfig, n_input: int, n_layers: int, n_hidden: int):
    """A Flax normal-head MLP registered as NumPyro module `name`, output width L."""
    return flax_module(
        name,
        LikelihoodMLP("normal", cfg.n_latent, n_layers, n_hidden, cfg.init, cfg.compute_dtype),
        input_shape=(1, n_input),
    )


def cell_encoder(cfg: ModelConfig, n_input: int):
    """q(z | ·) of a family: the `basal_encoder` module, width and depth from basal_encoder_*."""
    return normal_mlp(
        "basal_encoder", cfg, n_input, cfg.basal_encoder_n_layers, cfg.basal_encoder_n_hidden
    )


def decoder(cfg: ModelConfig, n_input: int, perturbation_columns: tuple[int, int]):
    """p(x | u) of a family: the `decoder` module with the configured likelihood
    (docs/method.md#networks); with `decoder_linear_skip` the columns [start, stop) of u that
    carry the perturbation get a linear path to the gene logits."""
    return flax_module(
        "decoder",
        LikelihoodMLP(
            cfg.likelihood,
            cfg.n_genes,
            cfg.decoder_n_layers + 1,
            cfg.decoder_n_hidden,
            cfg.init,
            cfg.compute_dtype,
            cfg.decoder_linear_skip,
            perturbation_columns,
        ),
        input_shape=(1, n_input),
    )


def perturbation_columns(cfg: ModelConfig) -> tuple[int, int]:
    """The columns of CRADLE's and SAMS-VAE's decoder input that carry the perturbation: z_p of
    [z_b; z_p; ...] in concat mode, z_b + z_p in sum mode."""
    L = cfg.n_latent
    return (0, L) if cfg.sum_mode else (L, 2 * L)


def perturbation_offset(D: jax.Array, M: jax.Array, E: jax.Array) -> jax.Array:
    """dᵀ(M⊙E) per particle and cell: (B, T), (P, T, L), (P, T, L) → (P, B, L)."""
    return jnp.einsum("bt,ptl->pbl", D, M * E)


def sparse_embedding_modules(cfg: ModelConfig) -> tuple[jax.Array, object]:
    """The parameters of q(M) q(E | M): mask logits φ (T, L) and the embedding encoder.

    Registered before any sample site (and, in CRADLE, before the QC encoder), the order in
    which parameters draw their initial values."""
    T, L = cfg.n_perturbations, cfg.n_latent
    logits = numpyro.param("mask_logits", jnp.full((T, L), cfg.mask_init_logits, jnp.float32))
    embedding_encoder = normal_mlp(
        "embedding_encoder",
        cfg,
        L + T,
        cfg.embedding_encoder_n_layers,
        cfg.embedding_encoder_n_hidden,
    )
    return logits, embedding_encoder


def sparse_embedding_guide(
    cfg: ModelConfig, weights: SiteWeights, logits: jax.Array, embedding_encoder
) -> tuple[jax.Array, jax.Array]:
    """q(M) q(E | M) of CRADLE and SAMS-VAE (docs/method.md#cradle-guide): M (P, T, L),
    E (P, T, L).

    Must be called inside the particle plate (dim −2)."""
    P, T = cfg.n_particles, cfg.n_perturbations
    with numpyro.plate("perturbations", T, dim=-1):
        M = weighted_site(
            "mask",
            StraightThroughBernoulli(logits, cfg.gs_temperature).to_event(1),
            weights.perturbation,
        )
        identity = jnp.broadcast_to(jnp.eye(T, dtype=M.dtype), (P, T, T))
        q_E = embedding_encoder(jnp.concatenate([M, identity], axis=-1))
        E = weighted_site("E", q_E.to_event(1), weights.perturbation)
    return M, E


def sparse_embedding_priors(cfg: ModelConfig) -> tuple[dist.Distribution, dist.Distribution]:
    """p(M) = Bernoulli(π) and p(E) = N(0, s²) of one perturbation's L latent dimensions, for
    the sites `mask` and `E` of CRADLE and SAMS-VAE (docs/method.md#cradle-model)."""
    prior_logit = jnp.log(cfg.mask_prior_prob) - jnp.log1p(-cfg.mask_prior_prob)
    L = cfg.n_latent
    p_M = dist.Bernoulli(logits=prior_logit).expand((L,)).to_event(1)
    return p_M, dist.Normal(0.0, cfg.embedding_prior_scale).expand((L,)).to_event(1)
