"""The notebook API: train, predict, get_latent, evaluate, save and load on simulated data."""

import numpy as np
import pytest

import cradle_jax
from cradle_jax.data.errors import DataError
from cradle_jax.data.simulate import SimulationConfig, simulate
from tests.evaluate.conftest import SMALL_EVAL
from tests.train.conftest import TINY


def test_the_notebook_workflow_end_to_end(tmp_path):
    sim = simulate(SimulationConfig(n_cells=900, n_genes=110, n_perturbations=4, n_pairs=2))
    settings = {**TINY, "train.max_epochs": 2, **{f"eval.{k}": v for k, v in SMALL_EVAL.items()}}
    model = cradle_jax.CradleVAE(sim.adata, workdir=tmp_path / "run", **settings)
    assert model.config.model.n_latent == 4
    summary = model.train()
    assert summary["epochs"] == 2
    a, b = model.bundle.vocabulary.singles[:2]
    cells = model.predict(perturbation=[a, f"{b}+{a}"], n_cells=10)
    assert cells.obs["perturbation"].tolist() == [a] * 10 + [f"{a}+{b}"] * 10
    with pytest.raises(DataError, match="unknown perturbation 'nope'"):
        model.predict(perturbation=["nope"])
    controls = sim.adata[sim.adata.obs["perturbation"] == "non-targeting"][:6].copy()
    what_if = model.predict(controls, perturbation=f"{a}+{b}", source="cells")
    assert what_if.obs["source_cell"].tolist() == list(controls.obs_names)
    assert model.predict(controls, perturbation=a).n_obs == 6  # prior: as many cells
    with pytest.raises(ValueError, match="needs the cells"):
        model.predict(perturbation=a, source="cells")
    z = model.get_latent()
    assert z.shape == (sim.adata.n_obs, 4)
    assert np.isfinite(z).all()
    # Cells given as an AnnData are read as the training data was: the same latents.
    np.testing.assert_allclose(model.get_latent(sim.adata), z, rtol=1e-5, atol=1e-6)
    first = sim.adata[:50].copy()
    np.testing.assert_allclose(model.get_latent(first), z[:50], rtol=1e-5, atol=1e-6)
    first.obs["perturbation"] = first.obs["perturbation"].cat.add_categories("XYZ")
    first.obs.iloc[0, first.obs.columns.get_loc("perturbation")] = "XYZ"
    with pytest.raises(DataError, match="unknown perturbation 'XYZ'"):
        model.get_latent(first)
    metrics = model.evaluate()
    assert set(metrics["headline"]) >= {"ATE_pearsonr", "qc_pass_rate_t3"}
    loaded = cradle_jax.CradleVAE.load(model.save(tmp_path / "model.cradle"))
    assert loaded.evaluate() == metrics
    np.testing.assert_array_equal(
        loaded.predict(perturbation=a, n_cells=5).X.toarray(),
        model.predict(perturbation=a, n_cells=5).X.toarray(),
    )


def test_an_ambiguous_or_unknown_setting_is_refused():
    with pytest.raises(ValueError, match=r"'iwelbo_particles'.*use 'section\.field'"):
        cradle_jax.CradleVAE("cells.h5ad", iwelbo_particles=5)
    with pytest.raises(ValueError, match=r"'n_latnet'.*no config section"):
        cradle_jax.CradleVAE("cells.h5ad", n_latnet=5)
