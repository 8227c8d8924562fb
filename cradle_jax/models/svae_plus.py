"""SVAE+ (Lopez et al. 2022, sparse mechanism shift; docs/method.md#svae-plus).

Per perturbation t a learned prior mean e_t (a point parameter, `perturbation_means`, initial
values 0.1·N(0, 1) as in the SAMS-VAE code base) and mask probabilities p_t ~ Beta(a, b) whose
guide is a point mass at σ(φ_t); masks m_t ~ Bernoulli(p_t) with the straight-through guide
(docs/method.md#straight-through-masks) at the same probabilities (so the mask term of the
ELBO is 0 and the Beta prior alone pulls φ towards sparsity); z ~ N(m_t ⊙ e_t, I) with mean 0
for control cells; p(x | z); q(z | norm(x)). The perturbation-plated sites are reweighted as in
docs/method.md#plate-reweighting. One perturbation per cell: combinations are rejected before
training or generation (`families.check_dosage`).
"""

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from cradle_jax.models.config import ModelConfig
from cradle_jax.models.distributions import StraightThroughBernoulli, sanitize_logits
from cradle_jax.models.sites import (
    SiteWeights,
    cell_encoder,
    decoder,
    encoder_input,
    per_particle,
    perturbation_offset,
    weighted_site,
)

GLOBAL_SITES = ("mask_prob", "mask")
PRIOR_MEAN_INIT_SCALE = 0.1


def mask_probabilities(logits: jax.Array) -> jax.Array:
    """σ(φ) kept inside (0, 1), where the Beta density is finite."""
    eps = jnp.finfo(jnp.float32).eps
    return jnp.clip(jax.nn.sigmoid(sanitize_logits(logits)), eps, 1.0 - eps)


def global_guide(cfg: ModelConfig, weights: SiteWeights):
    """q(p) = δ(σ(φ)), q(m | p) = straight-through Bernoulli(p)."""
    P, T, L = cfg.n_particles, cfg.n_perturbations, cfg.n_latent
    logits = numpyro.param("mask_logits", jnp.full((T, L), cfg.mask_init_logits, jnp.float32))
    probs = jnp.broadcast_to(mask_probabilities(logits), (P, T, L))
    with numpyro.plate("particles", P, dim=-2), numpyro.plate("perturbations", T, dim=-1):
        p = weighted_site("mask_prob", dist.Delta(probs, event_dim=1), weights.perturbation)
        p_logits = jnp.log(p) - jnp.log1p(-p)
        return weighted_site(
            "mask",
            StraightThroughBernoulli(p_logits, cfg.gs_temperature).to_event(1),
            weights.perturbation,
        )


def guide(batch: dict, stats: dict, weights: SiteWeights, cfg: ModelConfig) -> None:
    """q(p) q(m | p) q(z | norm(x)); z's parameters as `z_loc`, `z_scale`."""
    global_guide(cfg, weights)
    encoder = cell_encoder(cfg, cfg.n_genes)
    x = encoder_input(batch, stats)
    with (
        numpyro.plate("particles", cfg.n_particles, dim=-2),
        numpyro.plate("cells", x.shape[0], dim=-1),
    ):
        q_z = per_particle(encoder(x), cfg.n_particles)
        numpyro.deterministic("z_loc", q_z.loc)
        numpyro.deterministic("z_scale", q_z.scale)
        weighted_site("z_basal", q_z.to_event(1), weights.cell)


def model(batch: dict, stats: dict, weights: SiteWeights, cfg: ModelConfig) -> None:
    """p(p) = Beta(a, b), p(m | p) = Bernoulli(p), p(z | d, m) = N(dᵀ(m ⊙ e), I), p(x | z)."""
    P, T, L = cfg.n_particles, cfg.n_perturbations, cfg.n_latent
    p_x_given = decoder(cfg, L, (0, L))  # z, whose prior mean carries the perturbation
    means = numpyro.param(
        "perturbation_means",
        lambda key: PRIOR_MEAN_INIT_SCALE * jax.random.normal(key, (T, L), jnp.float32),
    )
    B = batch["D"].shape[0]
    with numpyro.plate("particles", P, dim=-2):
        with numpyro.plate("perturbations", T, dim=-1):
            p = weighted_site(
                "mask_prob",
                dist.Beta(cfg.mask_beta_a, cfg.mask_beta_b).expand((L,)).to_event(1),
                weights.perturbation,
            )
            M = weighted_site("mask", dist.Bernoulli(probs=p).to_event(1), weights.perturbation)
        with numpyro.plate("cells", B, dim=-1):
            prior_mean = perturbation_offset(batch["D"], M, jnp.broadcast_to(means, (P, T, L)))
            z = weighted_site("z_basal", dist.Normal(prior_mean, 1.0).to_event(1), weights.cell)
            weighted_site(
                "x",
                p_x_given(z, batch["library_size"]).to_event(1),
                weights.reconstruction,
                obs=batch.get("X"),
            )
