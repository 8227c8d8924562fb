"""CRADLE-VAE as NumPyro programs: the generative `model` and the correlated `guide`.

Both are described in docs/method.md#cradle-model and docs/method.md#cradle-guide. Plate
reweighting (docs/method.md#plate-reweighting) and per-cell weights enter through
`handlers.scale`/`handlers.mask` inside the plates, identically in model and guide, so NumPyro's
log p − log q of every site is already weighted as the objective needs.

Where this differs from the original code:
- Each cell is decoded once, on its own path: u = [z_b; dᵀ(M⊙E); cᵀA] (concat) or
  z_b + dᵀ(M⊙E) + cᵀA (sum). For a pass cell cᵀA = 0, which is the original's good path; for a
  fail cell it is the bad path with the cell's own failed criteria, where the original added
  every row of A (identical for Q = 1; docs/decisions.md#qc-columns-each).
- The QC encoder sees a one-hot of the criterion beside its constant input, so rows of A can
  differ, where the original's were all equal (for Q = 1 this is a constant input of width
  L + 1).
"""

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from cradle_jax.models.config import ModelConfig
from cradle_jax.models.sites import (
    SiteWeights,
    cell_encoder,
    decoder,
    encoder_input,
    normal_mlp,
    perturbation_columns,
    perturbation_offset,
    sparse_embedding_guide,
    sparse_embedding_modules,
    sparse_embedding_prior,
    weighted_site,
)

GLOBAL_SITES = ("mask", "E", "artifact_E")


def decoder_width(cfg: ModelConfig) -> int:
    """L (sum mode), 2L (sum mode with the artifact block: [z_b + z_p; a]) or 3L (concat)."""
    if not cfg.sum_mode:
        return 3 * cfg.n_latent
    return 2 * cfg.n_latent if cfg.artifact_block else cfg.n_latent


def decoder_input(
    z_b: jax.Array,
    z_p: jax.Array,
    artifact: jax.Array,
    sum_mode: bool,
    artifact_block: bool = False,
) -> jax.Array:
    """u = z_b + z_p + a (sum mode, width L), [z_b + z_p; a] (sum mode with the artifact block,
    2L) or [z_b; z_p; a] (concat mode, 3L), each (P, B, ·)."""
    if not sum_mode:
        return jnp.concatenate([z_b, z_p, artifact], axis=-1)
    if artifact_block:
        return jnp.concatenate([z_b + z_p, artifact], axis=-1)
    return z_b + z_p + artifact


def artifact_offset(qc: jax.Array, A: jax.Array) -> jax.Array:
    """cᵀA, the cell's own failed criteria, per particle and cell: (B, Q), (P, Q, L) → (P, B, L)."""
    return jnp.einsum("bq,pql->pbl", qc, A)


def global_guide(cfg: ModelConfig, weights: SiteWeights):
    """q(M) q(E | M) q(A): the global sites, shared by training and generation."""
    P, Q, L = cfg.n_particles, cfg.n_qc, cfg.n_latent
    logits, embedding_encoder = sparse_embedding_modules(cfg)
    qc_encoder = normal_mlp(
        "qc_encoder", cfg, L + Q, cfg.embedding_encoder_n_layers, cfg.embedding_encoder_n_hidden
    )
    with numpyro.plate("particles", P, dim=-2):
        M, E = sparse_embedding_guide(cfg, weights, logits, embedding_encoder)
        with numpyro.plate("qc", Q, dim=-1):
            constant = jnp.ones((P, Q, L)), jnp.broadcast_to(jnp.eye(Q), (P, Q, Q))
            q_A = qc_encoder(jnp.concatenate(constant, axis=-1))
            A = weighted_site("artifact_E", q_A.to_event(1), weights.qc)
    return M, E, A


def guide(
    batch: dict,
    stats: dict,
    weights: SiteWeights,
    cfg: ModelConfig,
    counterfactual: bool = False,
) -> None:
    """q(M) q(E|M) q(A) q(z_b | x, d, c, M, E, A), plus the counterfactual basal posterior
    (docs/method.md#cradle-guide).

    The basal posterior's parameters are recorded as deterministic sites `z_loc`, `z_scale`.
    With `counterfactual` (training), q(z_b | x, d, 1−c, ...) is recorded as `z_cf_loc`,
    `z_cf_scale` (P, B, L) for the counterfactual KL and never sampled.
    """
    M, E, A = global_guide(cfg, weights)
    encoder = cell_encoder(cfg, cfg.n_genes + 2 * cfg.n_latent)
    x = encoder_input(batch, stats)
    z_p = perturbation_offset(batch["D"], M, E)
    artifact = artifact_offset(batch["qc"], A)
    if counterfactual:
        # One encoder call on both flips: the counts part of the first layer is shared.
        flipped = artifact_offset(1.0 - batch["qc"], A)
        q_both = encoder((x, z_p, jnp.stack([artifact, flipped])))
        q_zb = dist.Normal(q_both.loc[0], q_both.scale[0])
        numpyro.deterministic("z_cf_loc", q_both.loc[1])
        numpyro.deterministic("z_cf_scale", q_both.scale[1])
    else:
        q_zb = encoder((x, z_p, artifact))
    with (
        numpyro.plate("particles", cfg.n_particles, dim=-2),
        numpyro.plate("cells", x.shape[0], dim=-1),
    ):
        numpyro.deterministic("z_loc", q_zb.loc)
        numpyro.deterministic("z_scale", q_zb.scale)
        weighted_site("z_basal", q_zb.to_event(1), weights.cell)


def artifact_log_theta_shift(qc: jax.Array, cfg: ModelConfig) -> jax.Array | None:
    """δ per gene on the log dispersion of each cell that fails any criterion: (B, Q) → (B, G).

    A parameter `artifact_log_theta` (G,), starting at 0; None when `cfg.artifact_dispersion`
    is off or the likelihood has no dispersion. A pass cell (c = 0), and so every generated
    cell, uses the shared θ alone.
    """
    if not cfg.artifact_dispersion or cfg.likelihood != "library_nb":
        return None
    delta = numpyro.param("artifact_log_theta", jnp.zeros(cfg.n_genes, jnp.float32))
    return jnp.max(qc, axis=-1, keepdims=True) * delta


def model(batch: dict, stats: dict, weights: SiteWeights, cfg: ModelConfig) -> None:
    """p(M) p(E) p(A) p(z_b) p(x | z_b, d, c, M, E, A), each cell on its own decoder path
    (docs/method.md#cradle-model)."""
    P, Q, L = cfg.n_particles, cfg.n_qc, cfg.n_latent
    p_x_given = decoder(cfg, decoder_width(cfg), perturbation_columns(cfg))
    shift = artifact_log_theta_shift(batch["qc"], cfg)
    s = cfg.embedding_prior_scale
    B = batch["D"].shape[0]
    with numpyro.plate("particles", P, dim=-2):
        M, E = sparse_embedding_prior(cfg, weights)
        with numpyro.plate("qc", Q, dim=-1):
            A = weighted_site(
                "artifact_E", dist.Normal(0.0, s).expand((P, Q, L)).to_event(1), weights.qc
            )
        with numpyro.plate("cells", B, dim=-1):
            z_b = weighted_site(
                "z_basal", dist.Normal(0.0, 1.0).expand((P, B, L)).to_event(1), weights.cell
            )
            z_p = perturbation_offset(batch["D"], M, E)
            artifact = artifact_offset(batch["qc"], A)
            u = decoder_input(z_b, z_p, artifact, cfg.sum_mode, cfg.artifact_block)
            weighted_site(
                "x",
                p_x_given(u, batch["library_size"], shift).to_event(1),
                weights.reconstruction,
                obs=batch.get("X"),
            )
