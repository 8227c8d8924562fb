import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import Trace_ELBO

from cradle_jax.models.cradle import artifact_offset, decoder_input, guide, model
from cradle_jax.models.sites import perturbation_offset
from cradle_jax.train import objective
from cradle_jax.train.objective import gaussian_cf_kl, site_weights
from tests.settings import original_loss
from tests.tiny_model import init_params, tiny_batch, tiny_config, tiny_stats, training_loss


@jax.jit(static_argnames=("cfg", "loss_cfg", "term"))
def term_and_grads(params, batch, stats, key, cfg, loss_cfg, term):
    """One aux term, and its gradients w.r.t. the params, the counts X and the reference rows
    reference_X."""

    def f(p, x, reference_x):
        return objective.training_loss(
            p, {**batch, "X": x, "reference_X": reference_x}, stats, key, cfg, loss_cfg
        )[1][term]

    return jax.value_and_grad(f, argnums=(0, 1, 2))(params, batch["X"], batch["reference_X"])


@pytest.fixture
def params(cfg, batch, stats):
    return init_params(jax.random.key(0), batch, stats, cfg)


def test_plate_weights_w_and_v_match_numpy(cfg, batch, stats):
    weights, _ = site_weights(batch, stats, cfg, original_loss())
    D, qc, w = (np.asarray(batch[k]) for k in ("D", "qc", "weight"))
    norm = cfg.n_particles * w.sum()
    W = (D != 0) / np.asarray(stats["obs_dosage"])[None, :]  # (B, T), 1[D ≠ 0] / N^D
    V = (qc != 0) / np.asarray(stats["obs_qc"])[None, :]
    np.testing.assert_allclose(weights.perturbation, (w[:, None] * W).sum(0) / norm, rtol=1e-6)
    np.testing.assert_allclose(weights.qc, (w[:, None] * V).sum(0) / norm, rtol=1e-6)
    np.testing.assert_allclose(weights.cell, w / norm, rtol=1e-6)


def test_plate_weight_is_zero_for_a_perturbation_unobserved_in_the_split(cfg, batch, stats):
    stats = {**stats, "obs_dosage": jnp.asarray([3.0, 0.0, 4.0])}
    weights, _ = site_weights(batch, stats, cfg, original_loss())
    assert weights.perturbation[1] == 0
    assert np.isfinite(np.asarray(weights.perturbation)).all()


@pytest.mark.parametrize("mode", ["batch", "split", 0.3, "off"])
def test_alpha_modes(cfg, batch, stats, mode):
    weights, alpha = site_weights(batch, stats, cfg, original_loss(alpha=mode))
    w = np.asarray(batch["weight"])
    failed = np.asarray(batch["qc"]).max(1) > 0
    expected_alpha = {
        "batch": (w * failed).sum() / w.sum(),
        "split": 0.25,
        0.3: 0.3,
    }.get(mode)
    gamma = (
        np.ones_like(w) if mode == "off" else np.where(failed, 1 - expected_alpha, expected_alpha)
    )
    if mode != "off":
        assert float(alpha) == pytest.approx(expected_alpha)
    norm = cfg.n_particles * w.sum()
    np.testing.assert_allclose(weights.reconstruction, w * gamma / norm, rtol=1e-6)


@pytest.mark.parametrize("mode", ["batch", "split", 0.3])
def test_alpha_scope_cell_weights_the_whole_cell_term_with_mean_one(cfg, batch, stats, mode):
    """scope `cell`: one weight per cell on likelihood and z_b KL alike, α : 1−α between a pass
    and a fail cell, averaging 1 over the real cells; `reconstruction` leaves the KL at w."""
    w = np.asarray(batch["weight"])
    failed = np.asarray(batch["qc"]).max(1) > 0
    norm = cfg.n_particles * w.sum()
    weights, alpha = site_weights(batch, stats, cfg, original_loss(alpha=mode, alpha_scope="cell"))
    a = float(alpha)
    gamma = np.where(failed, 1 - a, a)
    expected = w * gamma * w.sum() / (w * gamma).sum() / norm
    np.testing.assert_allclose(weights.cell, expected, rtol=1e-5)
    np.testing.assert_allclose(weights.reconstruction, expected, rtol=1e-5)
    assert float(weights.cell.sum()) == pytest.approx(1.0 / cfg.n_particles, rel=1e-5)
    original, _ = site_weights(batch, stats, cfg, original_loss(alpha=mode))
    np.testing.assert_allclose(original.cell, w / norm, rtol=1e-6)


def test_alpha_scope_cell_changes_nothing_for_families_without_artifact_path(batch, stats):
    cfg = dataclasses.replace(tiny_config(), name="sams_vae")
    plain, _ = site_weights(batch, stats, cfg, original_loss(alpha="split"))
    scoped, _ = site_weights(batch, stats, cfg, original_loss(alpha="split", alpha_scope="cell"))
    np.testing.assert_allclose(scoped.cell, plain.cell)
    np.testing.assert_allclose(scoped.reconstruction, plain.reconstruction)


def test_alpha_batch_without_fail_cells_gives_pass_cells_zero_weight(cfg, batch, stats):
    no_fail = {**batch, "qc": jnp.zeros_like(batch["qc"])}
    weights, alpha = site_weights(no_fail, stats, cfg, original_loss(alpha="batch"))
    assert float(alpha) == 0
    assert float(weights.reconstruction.sum()) == 0
    loss, aux = training_loss(
        init_params(jax.random.key(0), no_fail, stats, cfg),
        no_fail,
        stats,
        jax.random.key(1),
        cfg,
        original_loss(alpha="batch"),
    )
    assert np.isfinite(float(loss))
    assert float(aux["loss_term_reconstruction"]) == 0


def test_decoder_input_composition_both_modes():
    rng = np.random.default_rng(0)
    P, B, T, Q, L = 2, 3, 4, 2, 5
    D = (rng.random((B, T)) < 0.5).astype(np.float32)
    qc = np.array([[0, 0], [1, 0], [1, 1]], np.float32)
    M = (rng.random((P, T, L)) < 0.5).astype(np.float32)
    E, A = rng.normal(size=(P, T, L)), rng.normal(size=(P, Q, L))
    z_b = rng.normal(size=(P, B, L))
    z_p = perturbation_offset(jnp.asarray(D), M, E)
    artifact = artifact_offset(jnp.asarray(qc), A)
    for p in range(P):
        for i in range(B):
            expected_zp = sum(D[i, t] * M[p, t] * E[p, t] for t in range(T))
            # cᵀA, the cell's own criteria (docs/decisions.md#qc-columns-each)
            expected_a = sum(qc[i, j] * A[p, j] for j in range(Q))
            np.testing.assert_allclose(z_p[p, i], expected_zp, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(artifact[p, i], expected_a, rtol=1e-5, atol=1e-6)
    concat = decoder_input(z_b, z_p, artifact, sum_mode=False)
    summed = decoder_input(z_b, z_p, artifact, sum_mode=True)
    blocked = decoder_input(z_b, z_p, artifact, sum_mode=True, artifact_block=True)
    np.testing.assert_allclose(concat, np.concatenate([z_b, z_p, artifact], -1), rtol=1e-6)
    np.testing.assert_allclose(summed, z_b + z_p + artifact, rtol=1e-6)
    np.testing.assert_allclose(blocked, np.concatenate([z_b + z_p, artifact], -1), rtol=1e-6)
    assert (np.asarray(artifact[:, 0]) == 0).all()  # a pass cell is on the good path


@pytest.mark.parametrize("form", ["reference", "exact"])
def test_cf_kl_forms_match_numpy(form):
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    s1, s2 = rng.uniform(0.5, 2, size=(2, 3, 4)), rng.uniform(0.5, 2, size=(2, 3, 4))
    got = gaussian_cf_kl(mu1, s1, mu2, s2, form)
    mean_term = (mu1 - mu2) ** 2 / (s2**2 if form == "exact" else 1.0)
    expected = 0.5 * (s1**2 / s2**2 - 1 - np.log(s1**2 / s2**2) + mean_term)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    if form == "exact":  # the true KL(N1 || N2), per element, as SciPy-free closed form
        true_kl = np.log(s2 / s1) + (s1**2 + (mu1 - mu2) ** 2) / (2 * s2**2) - 0.5
        np.testing.assert_allclose(got, true_kl, rtol=1e-5)


def test_negative_elbo_equals_numpyro_trace_elbo(cfg, batch, stats, params):
    key = jax.random.key(3)
    loss_cfg = original_loss(cf_kl="none")
    _, aux = training_loss(params, batch, stats, key, cfg, loss_cfg)
    weights, _ = site_weights(batch, stats, cfg, loss_cfg)
    elbo_key, _ = jax.random.split(key)
    expected = Trace_ELBO().loss(elbo_key, params, model, guide, batch, stats, weights, cfg)
    assert float(aux["negative_elbo"]) == pytest.approx(float(expected), rel=1e-5)


def test_padding_cells_contribute_nothing(cfg, stats):
    padded, unpadded = tiny_batch(pad=3), tiny_batch(pad=0)
    params = init_params(jax.random.key(0), unpadded, stats, cfg)
    fixed = _fixed_samples(cfg)
    for loss_cfg in (original_loss(), original_loss(cf_kl="exact", alpha="split")):
        a, aux_a = training_loss(
            {**params, **fixed(6)}, unpadded, stats, jax.random.key(1), cfg, loss_cfg
        )
        b, aux_b = training_loss(
            {**params, **fixed(9)}, padded, stats, jax.random.key(1), cfg, loss_cfg
        )
        for name in aux_a:
            np.testing.assert_allclose(aux_a[name], aux_b[name], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a, b, rtol=1e-5)


def _fixed_samples(cfg):
    """Fixed global and basal samples: substituting them makes the loss deterministic."""
    rng = np.random.default_rng(7)
    P, T, Q, L = cfg.n_particles, cfg.n_perturbations, cfg.n_qc, cfg.n_latent
    M = (rng.random((P, T, L)) < 0.5).astype(np.float32)
    E = rng.normal(size=(P, T, L)).astype(np.float32)
    A = rng.normal(size=(P, Q, L)).astype(np.float32)
    z = rng.normal(size=(P, 16, L)).astype(np.float32)

    def for_cells(n: int) -> dict:
        return {"mask": M, "E": E, "artifact_E": A, "z_basal": z[:, :n]}

    return for_cells


def test_a_full_pass_counts_each_global_kl_exactly_once(cfg, stats):
    """Σ over the batches of one pass of (real cells × per-batch global term) = the split's KL/P."""
    rng = np.random.default_rng(0)
    n = 24
    D = np.zeros((n, 3), np.float32)
    for i in range(n):
        D[i, rng.choice(3, size=rng.integers(0, 3), replace=False)] = 1
    qc = (rng.random((n, 1)) < 0.3).astype(np.float32)
    X = rng.poisson(2.0, (n, 7)).astype(np.float32)
    split = {
        "X": X,
        "D": D,
        "qc": qc,
        "reference_X": X[::-1].copy(),
        "library_size": X.sum(1),
        "weight": np.ones(n, np.float32),
    }
    split_stats = {
        **stats,
        "obs_dosage": jnp.asarray((D != 0).sum(0), jnp.float32),
        "obs_qc": jnp.asarray((qc != 0).sum(0), jnp.float32),
    }
    params = init_params(
        jax.random.key(0), {k: jnp.asarray(v) for k, v in split.items()}, split_stats, cfg
    )
    fixed = {k: v for k, v in _fixed_samples(cfg)(8).items() if k != "z_basal"}
    loss_cfg = original_loss(cf_kl="none")
    totals = dict.fromkeys(("mask", "E", "artifact_E"), 0.0)
    order = rng.permutation(n)
    for start in range(0, n, 8):  # three batches of 8 cells, shuffled
        idx = order[start : start + 8]
        mini = {k: jnp.asarray(v[idx]) for k, v in split.items()}
        _, aux = training_loss(
            {**params, **fixed}, mini, split_stats, jax.random.key(2), cfg, loss_cfg
        )
        for name in totals:
            totals[name] += float(aux[f"loss_term_{name}"]) * len(idx)
    # the whole split in one batch with every plate weight 1/P: each global KL once
    full = {k: jnp.asarray(v) for k, v in split.items()}
    _, aux_full = training_loss(
        {**params, **fixed}, full, split_stats, jax.random.key(2), cfg, loss_cfg
    )
    for name in totals:
        np.testing.assert_allclose(
            totals[name], float(aux_full[f"loss_term_{name}"]) * n, rtol=1e-5
        )
    weights, _ = site_weights(full, split_stats, cfg, loss_cfg)
    np.testing.assert_allclose(
        np.asarray(weights.perturbation) * cfg.n_particles * n, 1.0, rtol=1e-6
    )
    np.testing.assert_allclose(np.asarray(weights.qc) * cfg.n_particles * n, 1.0, rtol=1e-6)


@pytest.mark.parametrize("form", ["reference", "exact"])
def test_gradients_reach_mask_logits_and_both_cf_passes(cfg, batch, stats, params, form):
    loss_cfg = original_loss(cf_kl=form)
    key = jax.random.key(5)
    # the reconstruction sees M only through its straight-through value
    _, (g, _, _) = term_and_grads(
        params, batch, stats, key, cfg, loss_cfg, "loss_term_reconstruction"
    )
    assert np.isfinite(g["mask_logits"]).all()
    assert np.abs(g["mask_logits"]).sum() > 0

    _, (g, gx, gcf) = term_and_grads(params, batch, stats, key, cfg, loss_cfg, "counterfactual_kl")
    assert np.abs(gx).sum() > 0, "no gradient through the counterfactual (factual-cell) pass"
    assert np.abs(gcf).sum() > 0, "no gradient through the reference pass"
    leaves = jax.tree.leaves(g["basal_encoder$params"])
    assert sum(float(jnp.abs(x).sum()) for x in leaves) > 0


@pytest.mark.parametrize(
    "case", ["all_zero_cells", "only_controls", "no_fail_cell", "split_without_fail_cells"]
)
@pytest.mark.parametrize("sum_mode", [False, True])
def test_no_nan_in_edge_cases(case, sum_mode, stats):
    cfg = tiny_config(sum_mode=sum_mode)
    b = dict(tiny_batch())
    s = dict(stats)
    if case == "all_zero_cells":
        b["X"] = jnp.zeros_like(b["X"])
        b["library_size"] = jnp.zeros_like(b["library_size"])
        b["reference_X"] = jnp.zeros_like(b["reference_X"])
    elif case == "only_controls":
        b["D"] = jnp.zeros_like(b["D"])
    elif case == "no_fail_cell":
        b["qc"] = jnp.zeros_like(b["qc"])
    else:
        b["qc"] = jnp.zeros_like(b["qc"])
        s["obs_qc"] = jnp.zeros_like(s["obs_qc"])
        s["fail_fraction"] = jnp.asarray(0.0)
    params = init_params(jax.random.key(0), b, s, cfg)
    for loss_cfg in (original_loss(), original_loss(alpha="split", cf_kl="exact")):
        loss, grads = term_and_grads(
            params, b, s, jax.random.key(1), cfg, loss_cfg, "negative_elbo"
        )
        assert np.isfinite(float(loss)), case
        assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(grads)), case


@pytest.mark.parametrize("term", ["negative_elbo", "counterfactual_kl"])
def test_genes_without_training_variance_and_huge_counts_stay_finite(cfg, stats, term):
    # Genes 0-2 are constant over training cells (std 0) but expressed, heavily, in the batch and
    # in the references: the encoder input must not blow up (no 1e6 inputs, capped log-variance).
    b = dict(tiny_batch())
    s = {**stats, "norm_std": stats["norm_std"].at[:3].set(0.0)}
    b["X"] = b["X"].at[:, :3].set(5e4)
    b["reference_X"] = b["reference_X"].at[:, :3].set(1e5)
    params = init_params(jax.random.key(0), b, s, cfg)
    for loss_cfg in (original_loss(), original_loss(cf_kl="exact")):
        value, grads = term_and_grads(params, b, s, jax.random.key(1), cfg, loss_cfg, term)
        assert np.isfinite(float(value))
        assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(grads))


def test_qc_mode_each_runs_with_per_criterion_weights():
    cfg = tiny_config(n_qc=2)
    b, s = tiny_batch(n_qc=2), tiny_stats(n_qc=2)
    params = init_params(jax.random.key(0), b, s, cfg)
    loss, _ = training_loss(params, b, s, jax.random.key(1), cfg, original_loss())
    assert np.isfinite(float(loss))
    weights, _ = site_weights(b, s, cfg, original_loss())
    qc = np.asarray(b["qc"])
    np.testing.assert_allclose(
        weights.qc, (qc != 0).sum(0) / 3.0 / (cfg.n_particles * 6), rtol=1e-6
    )


def test_parameters_depend_only_on_the_key_and_the_shapes(cfg, batch, stats):
    from_data = init_params(jax.random.key(3), batch, stats, cfg)
    from_placeholders = init_params(jax.random.key(3), *objective.placeholder_inputs(cfg), cfg)
    assert jax.tree.structure(from_data) == jax.tree.structure(from_placeholders)
    for a, b in zip(jax.tree.leaves(from_data), jax.tree.leaves(from_placeholders), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bfloat16_products_keep_the_loss_and_its_gradient(cfg, batch, stats, params):
    """compute_dtype bfloat16 (matrix products in bf16, float32 accumulation and loss terms)
    against float32 with the same parameters and key: the loss within 1e-3 relative (measured
    1e-4 here, 3e-5 at the Adamson config) and the gradient pointing the same way."""
    cfg16 = dataclasses.replace(cfg, compute_dtype="bfloat16")
    loss_and_grad = jax.jit(
        jax.value_and_grad(objective.training_loss, has_aux=True),
        static_argnames=("cfg", "loss_cfg"),
    )
    for seed in range(3):
        key = jax.random.key(seed)
        (loss32, _), grad32 = loss_and_grad(params, batch, stats, key, cfg, original_loss())
        (loss16, _), grad16 = loss_and_grad(params, batch, stats, key, cfg16, original_loss())
        assert float(loss16) != float(loss32)
        assert float(loss16) == pytest.approx(float(loss32), rel=1e-3)
        g32, g16 = (
            jnp.concatenate([a.ravel() for a in jax.tree.leaves(g)]) for g in (grad32, grad16)
        )
        cosine = float(g32 @ g16 / (jnp.linalg.norm(g32) * jnp.linalg.norm(g16)))
        assert cosine > 0.999


def test_basal_dependence_matches_a_pairwise_numpy_sum():
    """Σ_g (n_g/n) · mean over ordered pairs i≠j in g of z_i·z_j, per particle, then averaged;
    the groups are each perturbation, the controls, each QC criterion's fails and the passes."""
    rng = np.random.default_rng(4)
    P, B, T, L = 2, 9, 3, 4
    D = np.zeros((B, T))
    D[0, 0] = D[1, 0] = D[2, 0] = 1  # three cells of perturbation 0
    D[3, 1] = D[4, 1] = 1  # two of perturbation 1
    D[5, [0, 1]] = 1  # a pair: in groups 0 and 1
    D[8, 2] = 1  # one cell of perturbation 2: no pair to estimate its mean from
    weight = np.ones(B)
    weight[4] = 0.0  # padding leaves group 1 with cells 3 and 5
    qc = np.zeros((B, 2))
    qc[[0, 3, 6], 0] = 1  # criterion 0 failed by three cells
    qc[[3, 7], 1] = 1  # criterion 1 by two, one of them failing both
    z = rng.normal(size=(P, B, L))
    batch = {"D": jnp.asarray(D), "qc": jnp.asarray(qc), "weight": weight}
    got = objective.basal_dependence(jnp.asarray(z), batch, qc_groups=True)
    without_qc = objective.basal_dependence(jnp.asarray(z), batch, qc_groups=False)

    def pairwise(groups) -> float:
        total = 0.0
        for p in range(P):
            for cells in groups:
                n = len(cells)
                if n < 2:
                    continue
                dots = [z[p, i] @ z[p, j] for i in cells for j in cells if i != j]
                total += n / weight.sum() * np.mean(dots) / P
        return total

    real = weight > 0
    members = [np.flatnonzero((D[:, t] != 0) & real) for t in range(T)]
    members.append(np.flatnonzero((D.sum(1) == 0) & real))  # controls: cells 6, 7
    qc_members = [np.flatnonzero((qc[:, j] != 0) & real) for j in range(2)]
    qc_members.append(np.flatnonzero((qc.sum(1) == 0) & real))  # passing every criterion
    assert float(without_qc) == pytest.approx(pairwise(members), rel=1e-5)
    assert float(got) == pytest.approx(pairwise(members + qc_members), rel=1e-5)


def test_basal_dependence_ignores_spread_and_sees_a_shifted_group():
    """No bias from the within-group spread: zero-mean noise scores ≈ 0, a shift scores ‖δ‖²."""
    rng = np.random.default_rng(5)
    B, L = 4000, 3
    D = np.zeros((B, 2))
    D[: B // 2, 0] = 1
    batch = {"D": jnp.asarray(D), "qc": jnp.zeros((B, 1)), "weight": np.ones(B)}
    noise = rng.normal(scale=3.0, size=(1, B, L))
    noisy = objective.basal_dependence(jnp.asarray(noise), batch, qc_groups=True)
    assert abs(float(noisy)) < 0.05
    shifted = noise.copy()
    shifted[0, : B // 2] += 2.0
    got = float(objective.basal_dependence(jnp.asarray(shifted), batch, qc_groups=True))
    # the perturbed half (share 1/2) and, through the all-pass group (share 1), everyone's mean
    # shift of 1 per dim: ½·4L + 1·L
    assert got == pytest.approx(0.5 * 4.0 * L + 1.0 * L, rel=0.1)


def losses_without_and_with_penalty(params, batch, stats, cfg, **penalty):
    """(loss, aux) without the basal-dependence penalty and with `penalty` set, same key."""
    base = original_loss(cf_kl="none")
    key = jax.random.key(2)
    return (
        training_loss(params, batch, stats, key, cfg, base),
        training_loss(params, batch, stats, key, cfg, dataclasses.replace(base, **penalty)),
    )


def test_independence_weight_adds_the_penalty_to_the_loss(cfg, batch, stats, params):
    (loss0, aux0), (loss1, aux1) = losses_without_and_with_penalty(
        params, batch, stats, cfg, independence=2.0
    )
    assert "basal_dependence" not in aux0
    assert float(loss1 - loss0) == pytest.approx(float(aux1["basal_dependence"]), rel=1e-4)
    with pytest.raises(ValueError, match="independence"):
        original_loss(independence=-1.0)
    with pytest.raises(ValueError, match="independence_groups"):
        original_loss(independence_groups="qc")
    _, (_, aux2) = losses_without_and_with_penalty(
        params, batch, stats, cfg, independence=2.0, independence_groups="perturbation_and_qc"
    )
    assert float(aux2["basal_dependence"]) != pytest.approx(float(aux1["basal_dependence"]))


def test_independence_leaves_svae_plus_alone(batch, stats):
    """SVAE+'s prior shifts z by the perturbation: the penalty would fight its own model."""
    cfg = tiny_config(name="svae_plus")
    singles = {**batch, "D": batch["D"] * (batch["D"].sum(-1, keepdims=True) <= 1)}
    params = init_params(jax.random.key(0), singles, stats, cfg)
    (loss0, _), (loss1, aux1) = losses_without_and_with_penalty(
        params, singles, stats, cfg, independence=5.0
    )
    assert "basal_dependence" not in aux1
    assert float(loss1) == float(loss0)
