"""CRADLE-VAE as NumPyro programs: the generative `model` and the correlated `guide` (SPEC §1–§2).

Shapes: P particles, B cells, G genes, T perturbations, Q QC columns, L latent dims.
Every site carries the particle axis first. Plate reweighting (§3.3) and per-cell weights enter
through `handlers.scale`/`handlers.mask` inside the plates, identically in model and guide, so
NumPyro's log p − log q of every site is already weighted as the objective needs.

Decisions beyond the reference (SPEC A1):
- Each cell is decoded once, on its own path: u = [z_b; dᵀ(M⊙E); cᵀA] (concat) or
  z_b + dᵀ(M⊙E) + cᵀA (sum). For a pass cell cᵀA = 0, which is the good path of §1.2; for a
  fail cell it is the bad path with the cell's own failed criteria (K5 fixed; identical for Q = 1).
- The QC encoder sees a one-hot of the criterion beside its constant input, so rows of A can
  differ (K6 fixed; for Q = 1 this is a constant input of width L + 1).
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.contrib.module import flax_module

from cradle_jax.models.distributions import StraightThroughBernoulli
from cradle_jax.models.networks import LikelihoodMLP


@dataclass(frozen=True)
class CradleConfig:
    """Architecture and priors (SPEC §6 defaults for the shipped configs)."""

    n_genes: int
    n_perturbations: int
    n_qc: int = 1
    n_latent: int = 200
    n_particles: int = 5
    sum_mode: bool = False
    likelihood: str = "library_nb"
    init: str = "torch"
    mask_prior_prob: float = 0.01
    embedding_prior_scale: float = 1.0
    mask_init_logits: float = 0.0
    gs_temperature: float = 1.0
    decoder_n_layers: int = 1  # the trunk has one more (§1.3)
    decoder_n_hidden: int = 400
    basal_encoder_n_layers: int = 1
    basal_encoder_n_hidden: int = 400
    embedding_encoder_n_layers: int = 4
    embedding_encoder_n_hidden: int = 400

    @property
    def decoder_width(self) -> int:
        return self.n_latent if self.sum_mode else 3 * self.n_latent


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class SiteWeights:
    """Per-site ELBO weights of one batch (already divided by P and the number of real cells).

    perturbation (T,): Σ_i w_i 1[D_it ≠ 0] / N^D_t, the §3.3 plate reweighting of M and E;
    qc (Q,): Σ_i w_i 1[qc_ij ≠ 0] / N^qc_j for A (K7 fixed: each row by its own flag);
    cell (B,): w_i for z_b; reconstruction (B,): w_i times the α class weight (§3.2).
    """

    perturbation: jax.Array
    qc: jax.Array
    cell: jax.Array
    reconstruction: jax.Array

    @classmethod
    def unweighted(cls, cfg: "CradleConfig", cell: jax.Array) -> "SiteWeights":
        """Weight 1 on every global site and `cell` (B,) on the per-cell sites (no plate
        reweighting, no α): for generation, encoding and the predictive IWELBO."""
        return cls(
            perturbation=jnp.ones(cfg.n_perturbations),
            qc=jnp.ones(cfg.n_qc),
            cell=cell,
            reconstruction=cell,
        )


def log_standardize(x: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """(log(1+x) − m)/s with §2.3's sanitising (NaN→1e-6, +inf→1e6, −inf→1e-6).

    A gene with zero training variance is divided by 1, not 0 (ours): training cells then get
    0 where §2.3 gives 1e-6, and a validation or reference cell that expresses a gene no training
    cell does gets log(1+x) − m instead of 1e6, an input that would blow up the encoder.
    """
    z = (jnp.log1p(x) - mean) / jnp.where(std > 0, std, 1.0)
    return jnp.nan_to_num(z, nan=1e-6, posinf=1e6, neginf=1e-6)


def _scaled(weight: jax.Array):
    """scale and mask handlers for a weight array: zero weights are masked, not scaled by 0."""
    positive = weight > 0
    return handlers.mask(mask=positive), handlers.scale(scale=jnp.where(positive, weight, 1.0))


def _weighted_site(name: str, fn: dist.Distribution, weight: jax.Array, **kwargs) -> jax.Array:
    mask, scale = _scaled(weight)
    with mask, scale:
        return numpyro.sample(name, fn, **kwargs)


def decoder_input(z_b: jax.Array, z_p: jax.Array, artifact: jax.Array, sum_mode: bool) -> jax.Array:
    """u = z_b + z_p + a (sum mode, width L) or [z_b; z_p; a] (concat mode, width 3L), (P, B, ·)."""
    if sum_mode:
        return z_b + z_p + artifact
    return jnp.concatenate([z_b, z_p, artifact], axis=-1)


def perturbation_offset(D: jax.Array, M: jax.Array, E: jax.Array) -> jax.Array:
    """dᵀ(M⊙E) per particle and cell: (B, T), (P, T, L), (P, T, L) → (P, B, L)."""
    return jnp.einsum("bt,ptl->pbl", D, M * E)


def artifact_offset(qc: jax.Array, A: jax.Array) -> jax.Array:
    """cᵀA, the cell's own failed criteria, per particle and cell: (B, Q), (P, Q, L) → (P, B, L)."""
    return jnp.einsum("bq,pql->pbl", qc, A)


def global_guide(cfg: CradleConfig, weights: SiteWeights):
    """q(M) q(E | M) q(A): the global sites, shared by training and generation."""
    P, T, Q, L = cfg.n_particles, cfg.n_perturbations, cfg.n_qc, cfg.n_latent
    logits = numpyro.param("mask_logits", jnp.full((T, L), cfg.mask_init_logits, jnp.float32))
    embedding_encoder = flax_module(
        "embedding_encoder",
        LikelihoodMLP(
            "normal", L, cfg.embedding_encoder_n_layers, cfg.embedding_encoder_n_hidden, cfg.init
        ),
        input_shape=(1, L + T),
    )
    qc_encoder = flax_module(
        "qc_encoder",
        LikelihoodMLP(
            "normal", L, cfg.embedding_encoder_n_layers, cfg.embedding_encoder_n_hidden, cfg.init
        ),
        input_shape=(1, L + Q),
    )
    with numpyro.plate("particles", P, dim=-2):
        with numpyro.plate("perturbations", T, dim=-1):
            M = _weighted_site(
                "mask",
                StraightThroughBernoulli(logits, cfg.gs_temperature).expand((P, T, L)).to_event(1),
                weights.perturbation,
            )
            identity = jnp.broadcast_to(jnp.eye(T, dtype=M.dtype), (P, T, T))
            q_E = embedding_encoder(jnp.concatenate([M, identity], axis=-1))
            E = _weighted_site("E", q_E.to_event(1), weights.perturbation)
        with numpyro.plate("qc", Q, dim=-1):
            constant = jnp.ones((P, Q, L)), jnp.broadcast_to(jnp.eye(Q), (P, Q, Q))
            q_A = qc_encoder(jnp.concatenate(constant, axis=-1))
            A = _weighted_site("qc_E", q_A.to_event(1), weights.qc)
    return M, E, A


def guide(
    batch: dict,
    stats: dict,
    weights: SiteWeights,
    cfg: CradleConfig,
    counterfactual: bool = True,
) -> None:
    """q(M) q(E|M) q(A) q(z_b | x, d, c, M, E, A) (§2.1), plus the counterfactual basal posterior.

    With `counterfactual`, q(z_b | x, d, 1−c, ...) is recorded as deterministic sites
    `z_cf_loc`, `z_cf_scale` (P, B, L) for the counterfactual KL and never sampled; the reference
    pass, which only needs the factual posterior's `z_loc`, `z_scale`, turns it off.
    """
    M, E, A = global_guide(cfg, weights)
    basal_encoder = flax_module(
        "basal_encoder",
        LikelihoodMLP(
            "normal", cfg.n_latent, cfg.basal_encoder_n_layers, cfg.basal_encoder_n_hidden, cfg.init
        ),
        input_shape=(1, cfg.n_genes + 2 * cfg.n_latent),
    )
    x = log_standardize(batch["X"], stats["norm_mean"], stats["norm_std"])
    x = jnp.broadcast_to(x, (cfg.n_particles, *x.shape))
    z_p = perturbation_offset(batch["D"], M, E)
    if counterfactual:
        flipped = artifact_offset(1.0 - batch["qc"], A)
        q_cf = basal_encoder(jnp.concatenate([x, z_p, flipped], axis=-1))
        numpyro.deterministic("z_cf_loc", q_cf.loc)
        numpyro.deterministic("z_cf_scale", q_cf.scale)
    with (
        numpyro.plate("particles", cfg.n_particles, dim=-2),
        numpyro.plate("cells", x.shape[1], dim=-1),
    ):
        q_zb = basal_encoder(jnp.concatenate([x, z_p, artifact_offset(batch["qc"], A)], axis=-1))
        numpyro.deterministic("z_loc", q_zb.loc)
        numpyro.deterministic("z_scale", q_zb.scale)
        _weighted_site("z_basal", q_zb.to_event(1), weights.cell)


def model(batch: dict, stats: dict, weights: SiteWeights, cfg: CradleConfig) -> None:
    """p(M) p(E) p(A) p(z_b) p(x | z_b, d, c, M, E, A) (§1), each cell on its own decoder path."""
    P, T, Q, L = cfg.n_particles, cfg.n_perturbations, cfg.n_qc, cfg.n_latent
    decoder = flax_module(
        "decoder",
        LikelihoodMLP(
            cfg.likelihood, cfg.n_genes, cfg.decoder_n_layers + 1, cfg.decoder_n_hidden, cfg.init
        ),
        input_shape=(1, cfg.decoder_width),
    )
    prior_logit = jnp.log(cfg.mask_prior_prob) - jnp.log1p(-cfg.mask_prior_prob)
    s = cfg.embedding_prior_scale
    B = batch["D"].shape[0]
    with numpyro.plate("particles", P, dim=-2):
        with numpyro.plate("perturbations", T, dim=-1):
            M = _weighted_site(
                "mask",
                dist.Bernoulli(logits=prior_logit).expand((P, T, L)).to_event(1),
                weights.perturbation,
            )
            E = _weighted_site(
                "E", dist.Normal(0.0, s).expand((P, T, L)).to_event(1), weights.perturbation
            )
        with numpyro.plate("qc", Q, dim=-1):
            A = _weighted_site(
                "qc_E", dist.Normal(0.0, s).expand((P, Q, L)).to_event(1), weights.qc
            )
        with numpyro.plate("cells", B, dim=-1):
            z_b = _weighted_site(
                "z_basal", dist.Normal(0.0, 1.0).expand((P, B, L)).to_event(1), weights.cell
            )
            z_p = perturbation_offset(batch["D"], M, E)
            u = decoder_input(z_b, z_p, artifact_offset(batch["qc"], A), cfg.sum_mode)
            p_x = decoder(u, batch["library_size"])
            _weighted_site("x", p_x.to_event(1), weights.reconstruction, obs=batch.get("X"))
