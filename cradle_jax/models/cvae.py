"""Conditional VAE: z ~ N(0, I), p(x | [z; d]), q(z | [norm(x); d]), plain ELBO.

No global latent variables: the perturbation enters the decoder as its dosage row, so an unseen
combination is generated from its multi-hot d. QC labels are not used (docs/method.md#cvae).
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
    per_particle,
    weighted_site,
)

GLOBAL_SITES = ()


def global_guide(cfg: ModelConfig, weights: SiteWeights) -> None:
    """The cVAE has no global latent variables."""


def _with_dosage(h: jnp.ndarray, D: jnp.ndarray) -> jnp.ndarray:
    """[h; d] for every particle: (P, B, F), (B, T) → (P, B, F + T)."""
    return jnp.concatenate([h, jnp.broadcast_to(D, (h.shape[0], *D.shape))], axis=-1)


def guide(batch: dict, stats: dict, weights: SiteWeights, cfg: ModelConfig) -> None:
    """q(z | [norm(x); d]); its parameters as `z_loc`, `z_scale`."""
    encoder = cell_encoder(cfg, cfg.n_genes + cfg.n_perturbations)
    x = encoder_input(batch, stats)
    with (
        numpyro.plate("particles", cfg.n_particles, dim=-2),
        numpyro.plate("cells", x.shape[0], dim=-1),
    ):
        q_z = per_particle(encoder((x, batch["D"])), cfg.n_particles)
        numpyro.deterministic("z_loc", q_z.loc)
        numpyro.deterministic("z_scale", q_z.scale)
        weighted_site("z_basal", q_z.to_event(1), weights.cell)


def model(batch: dict, stats: dict, weights: SiteWeights, cfg: ModelConfig) -> None:
    """p(z) = N(0, I), p(x | [z; d])."""
    P, L = cfg.n_particles, cfg.n_latent
    p_x_given = decoder(cfg, L + cfg.n_perturbations, (L, L + cfg.n_perturbations))  # d
    B = batch["D"].shape[0]
    with numpyro.plate("particles", P, dim=-2), numpyro.plate("cells", B, dim=-1):
        z = weighted_site("z_basal", dist.Normal(0.0, 1.0).expand((L,)).to_event(1), weights.cell)
        weighted_site(
            "x",
            p_x_given(_with_dosage(z, batch["D"]), batch["library_size"]).to_event(1),
            weights.reconstruction,
            obs=batch.get("X"),
        )
