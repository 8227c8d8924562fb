"""The NB decoder's per-gene parameters start at the training cells' count moments."""

import numpy as np

from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.data.statistics import CountMoments, count_moments
from cradle_jax.train.likelihood_init import DISPERSION_RANGE, likelihood_from_data
from cradle_jax.train.loop import train_and_evaluate
from tests.train.conftest import saved_params, tiny_config


def fake_params(n_genes: int) -> dict:
    return {
        "decoder$params": {
            "gene_logits": {"bias": np.zeros(n_genes), "kernel": np.ones((2, n_genes))},
            "log_theta": np.zeros(n_genes),
            "trunk": {"layer_0": {"bias": np.ones(2)}},
        },
        "mask_logits": np.full((3, 2), 3.0),
    }


def test_bias_gives_the_proportions_and_log_theta_the_clipped_dispersions():
    moments = CountMoments(
        proportion=np.array([0.5, 0.3, 0.15, 0.05]), dispersion=np.array([20.0, 1e-4, 1e6, np.inf])
    )
    params = likelihood_from_data(fake_params(4), moments)
    bias = params["decoder$params"]["gene_logits"]["bias"]
    np.testing.assert_allclose(np.exp(bias) / np.exp(bias).sum(), moments.proportion, rtol=1e-6)
    low, high = DISPERSION_RANGE
    np.testing.assert_allclose(
        params["decoder$params"]["log_theta"], np.log([20.0, low, high, high]), rtol=1e-6
    )
    untouched = fake_params(4)
    np.testing.assert_array_equal(params["decoder$params"]["gene_logits"]["kernel"], 1.0)
    np.testing.assert_array_equal(params["decoder$params"]["trunk"]["layer_0"]["bias"], 1.0)
    np.testing.assert_array_equal(params["mask_logits"], untouched["mask_logits"])


def test_a_fresh_run_starts_from_the_training_pass_cells_moments(sim_path, tmp_path):
    """With the learning rate 0 the saved parameters are the initial ones."""
    frozen = {"train.learning_rate": 0.0, "train.max_steps": 1}
    config = tiny_config(sim_path, **frozen)
    train_and_evaluate(config, tmp_path / "data")
    data = load_perturb_data(sim_path, config.data, config.seed)
    train = data.cells("train")
    passing = train[data.qc[train].max(axis=1) == 0]
    x = data.counts.rows(passing).toarray().astype(np.float64)
    share = (x.sum(0) + 0.5) / (x.sum() + 0.5 * x.shape[1])
    decoder = saved_params(tmp_path / "data")["decoder$params"]
    bias = np.asarray(decoder["gene_logits"]["bias"])
    np.testing.assert_allclose(np.exp(bias) / np.exp(bias).sum(), share, rtol=1e-5)
    expected = count_moments(data.counts, passing, data.library_size).dispersion
    np.testing.assert_allclose(
        np.asarray(decoder["log_theta"]), np.log(np.clip(expected, *DISPERSION_RANGE)), rtol=1e-5
    )

    flat = tiny_config(sim_path, **frozen, **{"train.likelihood_from_data": False})
    train_and_evaluate(flat, tmp_path / "flat")
    np.testing.assert_array_equal(
        saved_params(tmp_path / "flat")["decoder$params"]["log_theta"], 0.0
    )
