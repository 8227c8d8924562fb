"""The control-mean and additive baselines against a NumPy computation on a tiny dataset."""

import numpy as np

from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.data.splits import SPLIT_CODES
from cradle_jax.evaluate.scores.baselines import baseline_ates
from cradle_jax.evaluate.scores.metrics import ate_metrics
from tests.conftest import labels_with_pairs, make_adata


def test_additive_is_the_sum_of_the_singles_training_effects_and_control_mean_is_zero(config):
    adata = make_adata(labels_with_pairs(20), n_genes=9, seed=3)
    config.split = "combinations"
    config.qc_doublets = False
    data = load_perturb_data(adata, config, seed=0)
    labels = ["A", "B+C", "A+D"]
    tables = baseline_ates(data, labels)

    counts = adata.X.toarray().astype(np.float64)
    scaled = np.log2(1 + 1e4 * counts / counts.sum(axis=1, keepdims=True))
    keep = (data.split == SPLIT_CODES["train"]) & (data.qc.max(axis=1) == 0)

    def mean(label):
        return scaled[keep & (data.labels == label)].mean(axis=0)

    def effect(single):
        return mean(single) - mean("non-targeting")

    expected = np.stack([effect("A"), effect("B") + effect("C"), effect("A") + effect("D")])
    np.testing.assert_allclose(tables["additive"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(tables["control_mean"], np.zeros_like(expected))
    # A constant prediction has neither a correlation nor a top-k set; R² is defined.
    scores = ate_metrics(expected + 0.1, tables["control_mean"])
    assert np.isnan(scores["ATE_pearsonr"])
    assert np.isnan(scores["jaccard_sim_top20"])
    assert scores["ATE_r2"] < 0
