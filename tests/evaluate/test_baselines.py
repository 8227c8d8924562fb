"""The baselines (docs/method.md#baselines) go through the same trainer, evaluation, export and
generation.

One tiny run per baseline on simulated data: training ends NaN-free with the family's own loss
terms logged, `evaluate` reports every headline metric, an export reproduces the metrics exactly,
generation and encoding work, and SVAE+ refuses combinations with a clear error.
"""

import json

import numpy as np
import pytest

from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.data.errors import DataError
from cradle_jax.data.simulate import SimulationConfig, simulate, write_simulation
from cradle_jax.evaluate.generation.cells import generated_anndata
from cradle_jax.evaluate.generation.latent import basal_latents
from cradle_jax.evaluate.report.export import export_model, load_export
from cradle_jax.evaluate.report.run import evaluate
from cradle_jax.evaluate.scores.data_reference import data_reference
from cradle_jax.train.bundle import load_workdir
from cradle_jax.train.loop import train_and_evaluate
from tests.evaluate.conftest import SMALL_EVAL
from tests.train.conftest import tiny_config

LOSS_TERMS = {
    "sams_vae": {"reconstruction", "mask", "E", "z_basal"},
    "cvae": {"reconstruction", "z_basal"},
    "svae_plus": {"reconstruction", "mask_prob", "mask", "z_basal"},
}


@pytest.fixture(scope="module")
def singles_path(tmp_path_factory):
    """Single perturbations only, so that every family, SVAE+ included, can train on it."""
    sim = simulate(
        SimulationConfig(n_cells=1000, n_genes=100, n_perturbations=4, n_pairs=0, n_latent=4)
    )
    path, _ = write_simulation(sim, tmp_path_factory.mktemp("sim") / "singles.h5ad")
    return path


@pytest.mark.parametrize("name", list(LOSS_TERMS))
def test_a_baseline_trains_evaluates_exports_and_generates(name, singles_path, tmp_path):
    config = tiny_config(singles_path, **{"model.name": name, "train.max_epochs": 1})
    config.eval.update(SMALL_EVAL)
    train_and_evaluate(config, tmp_path / "run")

    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    prefix = "train/loss_term_"
    logged = {k.removeprefix(prefix) for k in records[-1] if k.startswith(prefix)}
    assert logged == LOSS_TERMS[name]
    assert all(np.isfinite(r["val/loss"]) for r in records if "val/loss" in r)

    bundle = load_workdir(tmp_path / "run")
    assert bundle.cfg.name == name
    data = load_perturb_data(bundle.config.data.path, bundle.config.data, bundle.config.seed)
    reference = data_reference(bundle, data, bundle.config.eval, seed=0)
    metrics, _, _ = evaluate(bundle, reference, bundle.config.eval, seed=0)
    headline = metrics["headline"]
    for key in ("ATE_pearsonr", "ATE_r2", "jaccard_sim_top20"):
        assert np.isfinite(headline[key]), key
    assert np.isfinite(metrics["test_iwelbo"])

    exported = export_model(bundle, reference, tmp_path / "model.cradle")
    bundle2, reference2 = load_export(exported)
    assert bundle2.cfg == bundle.cfg
    assert evaluate(bundle2, reference2, bundle2.config.eval, seed=0)[0] == metrics

    cells = generated_anndata(bundle2, list(bundle.vocabulary.singles[:2]), 3, seed=0)
    assert cells.shape == (6, len(bundle.gene_names))
    latents = basal_latents(bundle, data, np.arange(10), np.zeros(2, np.uint32))
    assert latents.shape == (10, bundle.cfg.n_latent)
    assert np.isfinite(latents).all()
    if name == "svae_plus":
        pair = "+".join(bundle.vocabulary.singles[:2])
        with pytest.raises(DataError, match="one perturbation per cell"):
            generated_anndata(bundle, [pair], 3, seed=0)


def test_svae_plus_refuses_data_with_combinations(tmp_path):
    sim = simulate(SimulationConfig(n_cells=300, n_genes=100, n_perturbations=3, n_pairs=1))
    path, _ = write_simulation(sim, tmp_path / "pairs.h5ad")
    config = tiny_config(path, **{"model.name": "svae_plus"})
    with pytest.raises(DataError, match=r"svae_plus models one perturbation per cell.*\+"):
        train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
