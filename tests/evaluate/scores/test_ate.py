"""Evaluation-scale transform, data and model ATE, generation: against independent NumPy code."""

import jax
import numpy as np
import pytest

from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.data.errors import DataError
from cradle_jax.data.perturbations import PerturbationVocabulary
from cradle_jax.evaluate.generation.prior import generate_cells, sample_good_path
from cradle_jax.evaluate.scores.ate import data_ate, evaluation_scale, model_ate
from cradle_jax.train.objective import init_params
from tests.conftest import labels_with_pairs, make_adata
from tests.tiny_model import tiny_batch, tiny_config, tiny_stats

VOCABULARY = PerturbationVocabulary(("P0", "P1", "P2"), "+", "non-targeting")


def numpy_scale(x: np.ndarray) -> np.ndarray:
    total = x.sum(axis=-1, keepdims=True)
    return np.log2(1 + 1e4 * x / np.where(total > 0, total, 1))


def test_evaluation_scale_matches_numpy_and_gives_zero_for_an_empty_cell():
    x = np.array([[1.0, 0.0, 3.0], [0.0, 0.0, 0.0], [5.0, 5.0, 0.0]], np.float32)
    np.testing.assert_allclose(evaluation_scale(x), numpy_scale(x), rtol=1e-6)
    assert np.all(np.asarray(evaluation_scale(x))[1] == 0)


def test_data_ate_is_the_qc_pass_label_mean_minus_the_control_mean(config):
    adata = make_adata(labels_with_pairs(20), n_genes=10, seed=3)
    config.split = "combinations"
    data = load_perturb_data(adata, config, seed=0)
    labels = ["A", "A+B"]
    x = adata.X.toarray().astype(np.float64)
    keep = data.qc.max(axis=1) == 0
    scaled = numpy_scale(x)
    control = scaled[keep & (data.labels == "non-targeting")].mean(0)
    expected = [scaled[keep & (data.labels == label)].mean(0) - control for label in labels]
    np.testing.assert_allclose(data_ate(data, labels), expected, rtol=1e-5, atol=1e-6)
    all_control = scaled[data.labels == "non-targeting"].mean(0)
    everyone = [scaled[data.labels == label].mean(0) - all_control for label in labels]
    np.testing.assert_allclose(
        data_ate(data, labels, qc_pass=False), everyone, rtol=1e-5, atol=1e-6
    )


def test_data_ate_of_a_label_without_qc_pass_cells_is_an_error_naming_it(config):
    adata = make_adata(labels_with_pairs(20), n_genes=10, seed=3)
    adata.obs.loc[adata.obs["perturbation"] == "C", "pct_counts_mt"] = 90.0
    data = load_perturb_data(adata, config, seed=0)
    with pytest.raises(DataError, match="no QC-pass cells for 'C'"):
        data_ate(data, ["A", "C"])


@pytest.fixture(scope="module")
def params():
    cfg = tiny_config()
    return init_params(jax.random.key(0), tiny_batch(), tiny_stats(), cfg)


def test_generated_cells_are_deterministic_per_key_and_sum_near_the_library(params):
    cfg = tiny_config()
    dosage = VOCABULARY.dosage(["non-targeting", "P0+P2"]).toarray()
    key = np.asarray(jax.random.key_data(jax.random.key(5)))
    cells = generate_cells(params, cfg, dosage, n_cells=70, key_data=key, library=500.0, chunk=32)
    assert cells.shape == (2, 70, cfg.n_genes)
    np.testing.assert_array_equal(
        cells, generate_cells(params, cfg, dosage, 70, key, library=500.0, chunk=32)
    )
    assert not np.array_equal(
        cells, generate_cells(params, cfg, dosage, 70, key + 1, library=500.0, chunk=32)
    )
    assert np.all(cells >= 0)
    assert abs(cells.sum(-1).mean() / 500.0 - 1) < 0.25


def test_model_ate_averages_the_chunks_of_generated_cells(params):
    cfg = tiny_config()
    key = np.asarray(jax.random.key_data(jax.random.key(7)))
    ate = model_ate(
        params, cfg, VOCABULARY, ["P1", "P0+P1"], key, n_particles=64, chunk=32, from_means=False
    )
    # Independent aggregation: the same two chunks drawn directly, averaged in NumPy.
    dosage = VOCABULARY.dosage(["non-targeting", "P1", "P0+P1"]).toarray()
    chunk_cfg = tiny_config(n_particles=32)
    base = jax.random.wrap_key_data(key)
    draws = [
        np.asarray(sample_good_path(params, dosage, jax.random.fold_in(base, c), 1e4, chunk_cfg)[0])
        for c in range(2)
    ]
    means = numpy_scale(np.concatenate(draws).astype(np.float64)).mean(axis=0)
    np.testing.assert_allclose(ate, means[1:] - means[0], rtol=1e-4, atol=1e-5)


def test_model_ate_is_near_zero_when_every_mask_is_off_and_large_when_on(params):
    cfg = tiny_config()
    key = np.asarray(jax.random.key_data(jax.random.key(9)))
    off = {**params, "mask_logits": np.full_like(params["mask_logits"], -30.0)}
    on = {**params, "mask_logits": np.full_like(params["mask_logits"], 30.0)}
    kwargs = dict(n_particles=512, chunk=256, from_means=True)
    ate_off = model_ate(off, cfg, VOCABULARY, ["P0", "P2"], key, **kwargs)
    ate_on = model_ate(on, cfg, VOCABULARY, ["P0", "P2"], key, **kwargs)
    assert np.abs(ate_off).max() < 0.05
    assert np.abs(ate_on).max() > 4 * np.abs(ate_off).max()
