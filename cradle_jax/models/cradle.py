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
    sparse_embedding_priors,
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


def guide(batch: dict, stats: dict, weights: SiteWeights, cfg: ModelConfig) -> None:
    """q(M) q(E|M) q(A) q(z_b | x, d, c, M, E, A) (docs/method.md#cradle-guide).

    The basal posterior's parameters are recorded as deterministic sites `z_loc`, `z_scale`.
    """
    encoder, x, z_p, A = _cell_guide_inputs(batch, stats, weights, cfg)
    _basal_site(encoder((x, z_p, artifact_offset(batch["qc"], A))), cfg, weights)


def guide_with_counterfactual(
    batch: dict, stats: dict, weights: SiteWeights, cfg: ModelConfig
) -> None:
    """The guide, plus the counterfactual basal posterior q(z_b | x, d, 1−c, M, E, A), the
    cell as if its QC status were flipped, recorded as `z_cf_loc`, `z_cf_scale` (P, B, L) for
    the counterfactual KL (docs/method.md#counterfactual-kl) and never sampled. Training's guide.
    """
    encoder, x, z_p, A = _cell_guide_inputs(batch, stats, weights, cfg)
    artifact = artifact_offset(batch["qc"], A)
    flipped = artifact_offset(1.0 - batch["qc"], A)
    # One encoder call on both flips: the counts part of the first layer is shared.
    q_both = encoder((x, z_p, jnp.stack([artifact, flipped])))
    numpyro.deterministic("z_cf_loc", q_both.loc[1])
    numpyro.deterministic("z_cf_scale", q_both.scale[1])
    _basal_site(dist.Normal(q_both.loc[0], q_both.scale[0]), cfg, weights)


def _cell_guide_inputs(batch: dict, stats: dict, weights: SiteWeights, cfg: ModelConfig):
    """The global samples' part of a cell's posterior: the encoder, its input x, z_p = d(M∘E)
    and A."""
    M, E, A = global_guide(cfg, weights)
    encoder = cell_encoder(cfg, cfg.n_genes + 2 * cfg.n_latent)
    return encoder, encoder_input(batch, stats), perturbation_offset(batch["D"], M, E), A


def _basal_site(q_zb: dist.Normal, cfg: ModelConfig, weights: SiteWeights) -> None:
    """z_basal ~ q_zb per particle and cell, its parameters recorded as `z_loc`, `z_scale`."""
    with (
        numpyro.plate("particles", cfg.n_particles, dim=-2),
        numpyro.plate("cells", q_zb.loc.shape[-2], dim=-1),
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
    P, T, Q, L = cfg.n_particles, cfg.n_perturbations, cfg.n_qc, cfg.n_latent
    p_x_given = decoder(cfg, decoder_width(cfg), perturbation_columns(cfg))
    shift = artifact_log_theta_shift(batch["qc"], cfg)
    p_M, p_E = sparse_embedding_priors(cfg)
    p_A = dist.Normal(0.0, cfg.embedding_prior_scale).expand((L,)).to_event(1)
    p_zb = dist.Normal(0.0, 1.0).expand((L,)).to_event(1)
    with numpyro.plate("particles", P, dim=-2):
        with numpyro.plate("perturbations", T, dim=-1):
            M = weighted_site("mask", p_M, weights.perturbation)
            E = weighted_site("E", p_E, weights.perturbation)
        with numpyro.plate("qc", Q, dim=-1):
            A = weighted_site("artifact_E", p_A, weights.qc)
        with numpyro.plate("cells", batch["D"].shape[0], dim=-1):
            z_b = weighted_site("z_basal", p_zb, weights.cell)
            z_p = perturbation_offset(batch["D"], M, E)
            artifact = artifact_offset(batch["qc"], A)
            u = decoder_input(z_b, z_p, artifact, cfg.sum_mode, cfg.artifact_block)
            weighted_site(
                "x",
                p_x_given(u, batch["library_size"], shift).to_event(1),
                weights.reconstruction,
                obs=batch.get("X"),
            )
