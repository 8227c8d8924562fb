"""The simulator's planted truth, seen through the project's own data pipeline (QC, labels)."""

import numpy as np
import pytest

from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.data.simulate import ARTIFACT_NAMES, SimulationConfig, simulate


@pytest.fixture(scope="module")
def simulated():
    config = SimulationConfig(
        n_cells=8000, n_genes=300, n_perturbations=6, n_pairs=4, artifact_fraction=0.15, seed=11
    )
    return simulate(config)


@pytest.fixture(scope="module")
def loaded(simulated):
    from cradle_jax.config import data_config

    config = data_config()
    config.split = "combinations"
    return load_perturb_data(simulated.adata, config, seed=0)


def test_artifacts_are_flagged_by_our_qc_rules(simulated, loaded):
    fail = loaded.qc[:, 0] > 0
    kind = np.asarray(simulated.truth["artifact_names"])[simulated.truth["artifact"]]
    rates = {name: fail[kind == name].mean() for name in ARTIFACT_NAMES}
    assert rates["damaged"] >= 0.9, rates
    assert rates["empty"] >= 0.9, rates
    assert rates["none"] <= 0.1, rates


def test_data_ate_of_qc_pass_cells_approaches_the_true_ate(simulated, loaded):
    x = simulated.adata.X.toarray().astype(np.float64)
    scaled = np.log2(1 + 1e4 * x / np.maximum(x.sum(1, keepdims=True), 1))
    passed = loaded.qc[:, 0] == 0
    labels = np.asarray(simulated.adata.obs["perturbation"].astype(str))
    truth_labels = list(simulated.truth["labels"])
    control = scaled[passed & (labels == truth_labels[0])].mean(0)
    data_ate = np.stack(
        [scaled[passed & (labels == label)].mean(0) - control for label in truth_labels[1:]]
    )
    rho = np.corrcoef(data_ate.ravel(), simulated.truth["true_ate"][1:].ravel())[0, 1]
    assert rho >= 0.95, rho


def test_labels_and_dosage_follow_the_simulated_design(simulated, loaded):
    assert loaded.vocabulary.singles == tuple(simulated.truth["singles"])
    pairs = ["+".join(simulated.truth["singles"][p]) for p in simulated.truth["pairs"]]
    for pair in pairs:
        rows = loaded.dosage[np.flatnonzero(loaded.labels == pair)].toarray()
        assert (rows.sum(1) == 2).all()
