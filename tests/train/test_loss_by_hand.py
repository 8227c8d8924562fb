"""The whole CRADLE loss on a fixed batch with fixed samples equals a hand computation
(docs/method.md#objective).

Everything below `# --- NumPy reference` is an independent float64 re-implementation of the
objective from docs/method.md: the networks are evaluated from their raw parameter dicts, the
log-densities are written out (negative binomial via `scipy.special.gammaln`), and the plate
weights, α mixing and counterfactual KL are computed from the batch. The package is used only to
create parameters (`init_params`) and for the value under test (`training_loss`, jitted once per
configuration).

The samples of the sites `mask`, `E`, `artifact_E` and `z_basal` are fixed by putting them into the
params dict: `handlers.substitute(data=params)` replaces sample sites too, in the factual pass and
in the reference (counterfactual) pass alike, so the loss is a deterministic function of the
parameters and the batch — checked by evaluating it under two different keys.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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

AUX_TERMS = (
    "loss_term_reconstruction",
    "loss_term_mask",
    "loss_term_E",
    "loss_term_artifact_E",
    "loss_term_z_basal",
    "counterfactual_kl",
)

# (config overrides, loss config, n_qc)
CASES = {
    "concat-reference-alpha_batch": (dict(sum_mode=False), original_loss("batch", "reference"), 1),
    "sum-exact-alpha_split": (dict(sum_mode=True), original_loss("split", "exact", beta=0.3), 1),
    "concat-none-alpha_0.3": (dict(sum_mode=False), original_loss(0.3, "none"), 1),
    "shared-dispersion-concat-exact-alpha_split": (
        dict(sum_mode=False, artifact_dispersion=False),
        original_loss("split", "exact"),
        1,
    ),
    "qc_each-concat-reference-alpha_batch": (
        dict(sum_mode=False),
        original_loss("batch", "reference", beta=0.7),
        2,
    ),
    "qc_each-sum-exact-alpha_split": (dict(sum_mode=True), original_loss("split", "exact"), 2),
    "poisson-concat-exact-alpha_off": (
        dict(sum_mode=False, likelihood="poisson"),
        original_loss("off", "exact"),
        1,
    ),
}


# --- NumPy reference ------------------------------------------------------------------------


def numpy_objective(params, batch, stats, fixed, cfg, loss_cfg) -> dict:
    """Every aux term and the total loss (docs/method.md#objective), in float64."""
    params, batch, stats, fixed = f64(params), f64(batch), f64(stats), f64(fixed)
    P, T, Q, L = cfg.n_particles, cfg.n_perturbations, cfg.n_qc, cfg.n_latent
    X, D, qc, reference_X = batch["X"], batch["D"], batch["qc"], batch["reference_X"]
    w, library = batch["weight"], batch["library_size"]
    B = X.shape[0]
    M, E, A, z_b = fixed["mask"], fixed["E"], fixed["artifact_E"], fixed["z_basal"]

    # Weights (docs/method.md#plate-reweighting): plate weights over the real cells, everything
    # / (P · n_real).
    n_real = w.sum()
    norm = P * n_real
    obs_d, obs_q = stats["obs_dosage"], stats["obs_qc"]
    W = np.zeros((B, T))
    for t in range(T):
        if obs_d[t] > 0:
            W[:, t] = (D[:, t] != 0) / obs_d[t]
    V = np.zeros((B, Q))
    for j in range(Q):
        if obs_q[j] > 0:
            V[:, j] = (qc[:, j] != 0) / obs_q[j]
    w_pert = (w[:, None] * W).sum(0) / norm  # (T,)
    w_qc = (w[:, None] * V).sum(0) / norm  # (Q,) each row by its own flag
    w_cell = w / norm
    failed = qc.max(axis=1) > 0  # fail-any
    if loss_cfg.alpha == "off":
        gamma = np.ones(B)
    else:
        if loss_cfg.alpha == "batch":
            alpha = (w * failed).sum() / n_real
        elif loss_cfg.alpha == "split":
            alpha = float(stats["fail_fraction"])
        else:
            alpha = float(loss_cfg.alpha)
        gamma = np.where(failed, 1 - alpha, alpha)
    w_rec = w * gamma / norm

    # Guide: q(M), q(E | M), q(A).
    phi = params["mask_logits"]
    phi = np.where(np.isfinite(phi), phi, 0.0)
    log_q_M = bernoulli_logpmf(M, phi[None]).sum(-1)  # (P, T)
    emb_in = np.concatenate([M, np.broadcast_to(np.eye(T), (P, T, T))], axis=-1)
    loc_E, scale_E = normal_head(params["embedding_encoder$params"], emb_in)
    log_q_E = normal_logpdf(E, loc_E, scale_E).sum(-1)
    qc_in = np.concatenate([np.ones((P, Q, L)), np.broadcast_to(np.eye(Q), (P, Q, Q))], axis=-1)
    loc_A, scale_A = normal_head(params["qc_encoder$params"], qc_in)
    log_q_A = normal_logpdf(A, loc_A, scale_A).sum(-1)  # (P, Q)

    # Guide: q(z_b | norm(x), dᵀ(M⊙E), cᵀA) and the counterfactual posterior with (1−c)ᵀA.
    basal = params["basal_encoder$params"]
    z_p = np.zeros((P, B, L))
    own, flipped = np.zeros((P, B, L)), np.zeros((P, B, L))
    for p in range(P):
        for i in range(B):
            z_p[p, i] = sum(D[i, t] * M[p, t] * E[p, t] for t in range(T))
            own[p, i] = sum(qc[i, j] * A[p, j] for j in range(Q))
            flipped[p, i] = sum((1 - qc[i, j]) * A[p, j] for j in range(Q))

    def encode(counts, artifact):
        x = np.broadcast_to(
            log_standardize(counts, stats["norm_mean"], stats["norm_std"]), (P, *counts.shape)
        )
        return normal_head(basal, np.concatenate([x, z_p, artifact], axis=-1))

    loc_z, scale_z = encode(X, own)
    log_q_z = normal_logpdf(z_b, loc_z, scale_z).sum(-1)  # (P, B)

    # Model: priors and the likelihood of each cell on its own path.
    pi, s = cfg.mask_prior_prob, cfg.embedding_prior_scale
    log_p_M = (M * np.log(pi) + (1 - M) * np.log1p(-pi)).sum(-1)
    log_p_E = normal_logpdf(E, 0.0, s).sum(-1)
    log_p_A = normal_logpdf(A, 0.0, s).sum(-1)
    log_p_z = normal_logpdf(z_b, 0.0, 1.0).sum(-1)
    u = z_b + z_p + own if cfg.sum_mode else np.concatenate([z_b, z_p, own], axis=-1)
    # Artifact dispersion: a cell failing any criterion has log θ + δ (δ = 0 when switched off).
    delta = params.get("artifact_log_theta", np.zeros(cfg.n_genes))
    shift = failed[:, None] * delta[None]
    log_p_x = decoder_logpmf(
        params["decoder$params"], u, X[None], library, cfg.likelihood, shift,
        skip_input=u if cfg.sum_mode else z_p,
    )  # fmt: skip
    log_p_x = log_p_x.sum(-1)  # (P, B)

    terms = {
        "loss_term_reconstruction": -(w_rec[None] * log_p_x).sum(),
        "loss_term_mask": -(w_pert[None] * (log_p_M - log_q_M)).sum(),
        "loss_term_E": -(w_pert[None] * (log_p_E - log_q_E)).sum(),
        "loss_term_artifact_E": -(w_qc[None] * (log_p_A - log_q_A)).sum(),
        "loss_term_z_basal": -(w_cell[None] * (log_p_z - log_q_z)).sum(),
    }
    negative_elbo = sum(terms.values())

    # Counterfactual KL (docs/method.md#counterfactual-kl): reference pass = basal encoder on
    # the reference row with the flipped flags and the SAME (substituted) M, E, A, against this
    # cell's counterfactual posterior.
    if loss_cfg.cf_kl == "none":
        K = 0.0
    else:
        mu1, s1 = encode(reference_X, flipped)
        mu2, s2 = encode(X, flipped)
        mean_term = (mu1 - mu2) ** 2
        if loss_cfg.cf_kl == "exact":
            mean_term = mean_term / s2**2
        ratio = s1**2 / s2**2
        kappa = 0.5 * (ratio - 1 - np.log(ratio) + mean_term)  # (P, B, L)
        per_cell = kappa.sum(-1).mean(0)
        has_reference = (reference_X.sum(-1) != 0) & (w > 0)
        K = per_cell[has_reference].sum()
        if loss_cfg.cf_kl == "exact":
            K = K / max(has_reference.sum(), 1)
            # the exact form is the true Gaussian KL(ref ‖ cf)
            true_kl = np.log(s2 / s1) + (s1**2 + (mu1 - mu2) ** 2) / (2 * s2**2) - 0.5
            np.testing.assert_allclose(kappa, true_kl, rtol=1e-10, atol=1e-12)
    terms["counterfactual_kl"] = loss_cfg.beta * K
    terms["negative_elbo"] = negative_elbo
    terms["loss"] = negative_elbo + loss_cfg.beta * K
    return terms


# --- the test -------------------------------------------------------------------------------


def _perturbed_params(params: dict, rng: np.random.Generator) -> dict:
    """Non-default mask logits and dispersions, so those terms are not at their trivial init."""
    params = dict(params)
    params["mask_logits"] = jnp.asarray(rng.normal(size=params["mask_logits"].shape), jnp.float32)
    decoder = dict(params["decoder$params"])
    if "log_theta" in decoder:
        decoder["log_theta"] = jnp.asarray(
            0.5 * rng.normal(size=decoder["log_theta"].shape), jnp.float32
        )
    params["decoder$params"] = decoder
    if "artifact_log_theta" in params:
        params["artifact_log_theta"] = jnp.asarray(
            rng.normal(size=params["artifact_log_theta"].shape), jnp.float32
        )
    return params


def _fixed_samples(cfg, n_cells: int, rng: np.random.Generator) -> dict:
    P, T, Q, L = cfg.n_particles, cfg.n_perturbations, cfg.n_qc, cfg.n_latent
    return {
        "mask": jnp.asarray(rng.random((P, T, L)) < 0.5, jnp.float32),
        "E": jnp.asarray(rng.normal(size=(P, T, L)), jnp.float32),
        "artifact_E": jnp.asarray(rng.normal(size=(P, Q, L)), jnp.float32),
        "z_basal": jnp.asarray(rng.normal(size=(P, n_cells, L)), jnp.float32),
    }


@pytest.mark.parametrize("case", list(CASES))
def test_whole_loss_equals_hand_computation(case):
    overrides, loss_cfg, n_qc = CASES[case]
    cfg = tiny_config(n_qc=n_qc, **overrides)
    batch, stats = tiny_batch(n_qc=n_qc), tiny_stats(n_qc=n_qc)
    rng = np.random.default_rng(11)
    params = _perturbed_params(init_params(jax.random.key(0), batch, stats, cfg), rng)
    fixed = _fixed_samples(cfg, batch["X"].shape[0], rng)
    full = {**params, **fixed}

    loss, aux = training_loss(full, batch, stats, jax.random.key(1), cfg, loss_cfg)
    loss_other_key, _ = training_loss(full, batch, stats, jax.random.key(2), cfg, loss_cfg)
    expected = numpy_objective(params, batch, stats, fixed, cfg, loss_cfg)

    # every random draw is substituted: the key must not matter (float32 reassociation aside)
    np.testing.assert_allclose(float(loss_other_key), float(loss), rtol=1e-6)
    # The package runs in float32, the reference in float64. Each term is a sum of O(100)
    # weighted log-densities with float32 round-off ~1e-7 each; the worst observed relative
    # error is ~3e-6 (the E term, where log p and log q nearly cancel), so rtol 1e-5 holds for
    # every term. The tiny atol only covers terms that are exactly 0 (cf term with cf_kl="none").
    for name in AUX_TERMS:
        np.testing.assert_allclose(
            float(aux[name]), expected[name], rtol=1e-5, atol=1e-7, err_msg=name
        )
    np.testing.assert_allclose(
        float(aux["negative_elbo"]), expected["negative_elbo"], rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(float(loss), expected["loss"], rtol=1e-5)
    if loss_cfg.cf_kl != "none":
        assert expected["counterfactual_kl"] > 0  # the cf term is really exercised
    else:
        assert float(aux["counterfactual_kl"]) == 0


def test_reference_equal_to_own_row_gives_zero_cf_kl():
    """With reference_X = X both passes encode [norm(X); dᵀ(M⊙E); (1−c)ᵀA] with the same substituted
    M, E, A: the cf term vanishes in the package and in the hand computation (same jit cache)."""
    overrides, loss_cfg, n_qc = CASES["concat-reference-alpha_batch"]
    cfg = tiny_config(n_qc=n_qc, **overrides)
    batch, stats = tiny_batch(n_qc=n_qc), tiny_stats(n_qc=n_qc)
    batch = {**batch, "reference_X": batch["X"]}
    rng = np.random.default_rng(11)
    params = _perturbed_params(init_params(jax.random.key(0), batch, stats, cfg), rng)
    fixed = _fixed_samples(cfg, batch["X"].shape[0], rng)
    _, aux = training_loss({**params, **fixed}, batch, stats, jax.random.key(1), cfg, loss_cfg)
    expected = numpy_objective(params, batch, stats, fixed, cfg, loss_cfg)
    assert expected["counterfactual_kl"] == pytest.approx(0.0, abs=1e-12)
    assert float(aux["counterfactual_kl"]) == pytest.approx(0.0, abs=1e-6)
