"""Each baseline's loss on a fixed batch with fixed samples equals a hand computation
(docs/method.md#baselines).

As for CRADLE (test_loss_by_hand.py): the reference is an independent float64 NumPy
computation from the documented formulas over the raw parameter dicts, and the package is used
only to create parameters and for the value under test. Sample sites are fixed by substituting them
through the params dict, so the loss must not depend on the key. SVAE+'s mask probabilities are
not substituted: their guide is a point mass at σ(φ), a deterministic function of φ.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import betaln, expit

from tests.settings import original_loss
from tests.tiny_model import init_params, tiny_batch, tiny_config, tiny_stats, training_loss
from tests.train.numpy_reference import (
    bernoulli_logpmf,
    decoder_logpmf,
    f64,
    log_standardize,
    normal_head,
    normal_logpdf,
)

# The QC-label settings are CRADLE's; the baselines must ignore them (checked below).
CRADLE_LOSS = original_loss("batch", "reference", beta=0.5)

CASES = {
    "sams_vae-concat": dict(name="sams_vae", sum_mode=False),
    "sams_vae-sum-poisson": dict(name="sams_vae", sum_mode=True, likelihood="poisson"),
    "cvae": dict(name="cvae"),
    "cvae-poisson": dict(name="cvae", likelihood="poisson"),
    "svae_plus": dict(name="svae_plus", mask_beta_a=1.5, mask_beta_b=4.0),
    "svae_plus-poisson": dict(name="svae_plus", likelihood="poisson"),
}
TERMS = {
    "sams_vae": ("reconstruction", "mask", "E", "z_basal"),
    "cvae": ("reconstruction", "z_basal"),
    "svae_plus": ("reconstruction", "mask_prob", "mask", "z_basal"),
}


def batch_for(name: str) -> dict:
    """tiny_batch; for SVAE+ the pair cell (row 4) becomes a single: it models no combinations."""
    batch = tiny_batch()
    if name == "svae_plus":
        batch = {**batch, "D": batch["D"].at[4, 1].set(0.0)}
    return batch


def plate_weights(batch, stats, cfg):
    """Per-perturbation plate weights (docs/method.md#plate-reweighting) and per-cell weights,
    / (P · real cells)."""
    D, w = batch["D"], batch["weight"]
    norm = cfg.n_particles * w.sum()
    obs = stats["obs_dosage"]
    W = np.where(obs > 0, (D != 0) / np.where(obs > 0, obs, 1.0), 0.0)
    return (w[:, None] * W).sum(0) / norm, w / norm


def offset(D, M, E):
    """dᵀ(M⊙E) with explicit loops, (P, B, L)."""
    P, T, L = M.shape
    out = np.zeros((P, D.shape[0], L))
    for p in range(P):
        for i in range(D.shape[0]):
            out[p, i] = sum(D[i, t] * M[p, t] * E[p, t] for t in range(T))
    return out


def numpy_terms(params, batch, stats, fixed, cfg) -> dict:
    """−(weighted log p − log q) per site and the reconstruction term, in float64."""
    params, batch, stats, fixed = f64(params), f64(batch), f64(stats), f64(fixed)
    P, T, L = cfg.n_particles, cfg.n_perturbations, cfg.n_latent
    X, D, library = batch["X"], batch["D"], batch["library_size"]
    w_pert, w_cell = plate_weights(batch, stats, cfg)
    x = np.broadcast_to(log_standardize(X, stats["norm_mean"], stats["norm_std"]), (P, *X.shape))
    Dp = np.broadcast_to(D, (P, *D.shape))
    z = fixed["z_basal"]
    log_p_z_mean = np.zeros_like(z)
    terms = {}
    if cfg.name == "sams_vae":
        M, E = fixed["mask"], fixed["E"]
        phi = params["mask_logits"]
        emb_in = np.concatenate([M, np.broadcast_to(np.eye(T), (P, T, T))], axis=-1)
        loc_E, scale_E = normal_head(params["embedding_encoder$params"], emb_in)
        pi = cfg.mask_prior_prob
        log_p_M = (M * np.log(pi) + (1 - M) * np.log1p(-pi)).sum(-1)
        terms["mask"] = -(w_pert * (log_p_M - bernoulli_logpmf(M, phi[None]).sum(-1))).sum()
        log_p_E = normal_logpdf(E, 0.0, cfg.embedding_prior_scale).sum(-1)
        log_q_E = normal_logpdf(E, loc_E, scale_E).sum(-1)
        terms["E"] = -(w_pert * (log_p_E - log_q_E)).sum()
        z_p = offset(D, M, E)
        encoder_in = np.concatenate([x, z_p], axis=-1)
        u = z + z_p if cfg.sum_mode else np.concatenate([z, z_p], axis=-1)
        skip_input = u if cfg.sum_mode else z_p
    elif cfg.name == "cvae":
        encoder_in = np.concatenate([x, Dp], axis=-1)
        u = np.concatenate([z, Dp], axis=-1)
        skip_input = Dp
    else:
        M = fixed["mask"]
        eps = float(np.finfo(np.float32).eps)
        p = np.clip(expit(params["mask_logits"]), eps, 1 - eps)
        a, b = cfg.mask_beta_a, cfg.mask_beta_b
        log_beta = (a - 1) * np.log(p) + (b - 1) * np.log1p(-p) - betaln(a, b)
        # q(p) is a point mass (log q = 0); p(m | p) and q(m | p) are the same Bernoulli
        terms["mask_prob"] = -(w_pert * np.broadcast_to(log_beta.sum(-1), (P, T))).sum()
        log_p_m = (M * np.log(p) + (1 - M) * np.log1p(-p)).sum(-1)
        log_q_m = bernoulli_logpmf(M, np.log(p) - np.log1p(-p)).sum(-1)
        terms["mask"] = -(w_pert * (log_p_m - log_q_m)).sum()
        log_p_z_mean = offset(D, M, np.broadcast_to(params["perturbation_means"], (P, T, L)))
        encoder_in = x
        u = z
        skip_input = z
    loc_z, scale_z = normal_head(params["basal_encoder$params"], encoder_in)
    log_q_z = normal_logpdf(z, loc_z, scale_z).sum(-1)
    log_p_z = normal_logpdf(z, log_p_z_mean, 1.0).sum(-1)
    terms["z_basal"] = -(w_cell * (log_p_z - log_q_z)).sum()
    log_p_x = decoder_logpmf(
        params["decoder$params"], u, X[None], library, cfg.likelihood, skip_input=skip_input
    )
    terms["reconstruction"] = -(w_cell * log_p_x.sum(-1)).sum()
    return terms


def perturbed_params(params: dict, rng: np.random.Generator) -> dict:
    """Non-default mask logits, dispersions and prior means, so no term sits at its init."""
    params = dict(params)
    if "mask_logits" in params:
        params["mask_logits"] = jnp.asarray(
            rng.normal(size=params["mask_logits"].shape), jnp.float32
        )
    if "perturbation_means" in params:
        params["perturbation_means"] = jnp.asarray(
            rng.normal(size=params["perturbation_means"].shape), jnp.float32
        )
    decoder = dict(params["decoder$params"])
    if "log_theta" in decoder:
        decoder["log_theta"] = jnp.asarray(
            0.5 * rng.normal(size=decoder["log_theta"].shape), jnp.float32
        )
    params["decoder$params"] = decoder
    return params


def fixed_samples(name: str, cfg, n_cells: int, rng: np.random.Generator) -> dict:
    P, T, L = cfg.n_particles, cfg.n_perturbations, cfg.n_latent
    fixed = {"z_basal": jnp.asarray(rng.normal(size=(P, n_cells, L)), jnp.float32)}
    if name in ("sams_vae", "svae_plus"):
        fixed["mask"] = jnp.asarray(rng.random((P, T, L)) < 0.5, jnp.float32)
    if name == "sams_vae":
        fixed["E"] = jnp.asarray(rng.normal(size=(P, T, L)), jnp.float32)
    return fixed


@pytest.mark.parametrize("case", list(CASES))
def test_baseline_loss_equals_hand_computation(case):
    overrides = CASES[case]
    name = overrides["name"]
    cfg = tiny_config(**overrides)
    batch, stats = batch_for(name), tiny_stats()
    rng = np.random.default_rng(5)
    params = perturbed_params(init_params(jax.random.key(0), batch, stats, cfg), rng)
    fixed = fixed_samples(name, cfg, batch["X"].shape[0], rng)
    full = {**params, **fixed}

    loss, aux = training_loss(full, batch, stats, jax.random.key(1), cfg, CRADLE_LOSS)
    loss_other_key, _ = training_loss(full, batch, stats, jax.random.key(2), cfg, CRADLE_LOSS)
    expected = numpy_terms(params, batch, stats, fixed, cfg)

    np.testing.assert_allclose(float(loss_other_key), float(loss), rtol=1e-6)
    assert set(expected) == set(TERMS[name])
    assert {k.removeprefix("loss_term_") for k in aux if k.startswith("loss_term_")} == set(
        TERMS[name]
    )
    assert "counterfactual_kl" not in aux
    assert "alpha" not in aux
    for term in TERMS[name]:
        np.testing.assert_allclose(
            float(aux[f"loss_term_{term}"]), expected[term], rtol=1e-5, atol=1e-5, err_msg=term
        )
    np.testing.assert_allclose(float(loss), sum(expected.values()), rtol=1e-5)
    # QC labels and the cf settings do not enter a baseline's loss
    no_qc = {
        **batch,
        "qc": jnp.zeros_like(batch["qc"]),
        "reference_X": jnp.zeros_like(batch["reference_X"]),
    }
    loss_plain, _ = training_loss(
        full, no_qc, stats, jax.random.key(1), cfg, original_loss("off", "none")
    )
    np.testing.assert_allclose(float(loss_plain), float(loss), rtol=1e-6)
