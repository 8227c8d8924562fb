"""SAMS-VAE (Bereket & Karaletsos 2023): CRADLE without the artifact path.

z = z_b + dᵀ(M⊙E) (sum mode) or [z_b; dᵀ(M⊙E)] (concat), one decoder for every cell, CRADLE's
correlated guide without A and without the cᵀA block in the basal-encoder input, and the
plate-reweighted ELBO (docs/method.md#plate-reweighting). QC labels are not used: every cell is
reconstructed with weight 1 and there is no counterfactual term (docs/method.md#sams-vae).
"""

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from cradle_jax.models.config import ModelConfig
from cradle_jax.models.sites import (
    SiteWeights,
    cell_encoder,
    decoder,
    encoder_input,
    perturbation_columns,
    perturbation_offset,
    sparse_embedding_guide,
    sparse_embedding_modules,
    sparse_embedding_priors,
    weighted_site,
)

GLOBAL_SITES = ("mask", "E")


def decoder_width(cfg: ModelConfig) -> int:
    """L (sum mode) or 2L (concat): [z_b; z_p]."""
    return cfg.n_latent if cfg.sum_mode else 2 * cfg.n_latent


def global_guide(cfg: ModelConfig, weights: SiteWeights):
    """q(M) q(E | M)."""
    logits, embedding_encoder = sparse_embedding_modules(cfg)
    with numpyro.plate("particles", cfg.n_particles, dim=-2):
        return sparse_embedding_guide(cfg, weights, logits, embedding_encoder)


def guide(batch: dict, stats: dict, weights: SiteWeights, cfg: ModelConfig) -> None:
    """q(M) q(E | M) q(z_b | norm(x), dᵀ(M⊙E)); z_b's parameters as `z_loc`, `z_scale`."""
    M, E = global_guide(cfg, weights)
    encoder = cell_encoder(cfg, cfg.n_genes + cfg.n_latent)
    x = encoder_input(batch, stats)
    z_p = perturbation_offset(batch["D"], M, E)
    with (
        numpyro.plate("particles", cfg.n_particles, dim=-2),
        numpyro.plate("cells", x.shape[0], dim=-1),
    ):
        q_zb = encoder((x, z_p))
        numpyro.deterministic("z_loc", q_zb.loc)
        numpyro.deterministic("z_scale", q_zb.scale)
        weighted_site("z_basal", q_zb.to_event(1), weights.cell)


def model(batch: dict, stats: dict, weights: SiteWeights, cfg: ModelConfig) -> None:
    """p(M) p(E) p(z_b) p(x | z_b + dᵀ(M⊙E)) (or the concatenation)."""
    P, T, L = cfg.n_particles, cfg.n_perturbations, cfg.n_latent
    p_x_given = decoder(cfg, decoder_width(cfg), perturbation_columns(cfg))
    p_M, p_E = sparse_embedding_priors(cfg)
    with numpyro.plate("particles", P, dim=-2):
        with numpyro.plate("perturbations", T, dim=-1):
            M = weighted_site("mask", p_M, weights.perturbation)
            E = weighted_site("E", p_E, weights.perturbation)
        with numpyro.plate("cells", batch["D"].shape[0], dim=-1):
            z_b = weighted_site(
                "z_basal", dist.Normal(0.0, 1.0).expand((L,)).to_event(1), weights.cell
            )
            z_p = perturbation_offset(batch["D"], M, E)
            u = z_b + z_p if cfg.sum_mode else jnp.concatenate([z_b, z_p], axis=-1)
            weighted_site(
                "x",
                p_x_given(u, batch["library_size"]).to_event(1),
                weights.reconstruction,
                obs=batch.get("X"),
            )
