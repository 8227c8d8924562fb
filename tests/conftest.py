"""Shared test fixtures: tiny hand-built AnnData objects that follow the data contract."""

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cradle_jax.config import data_config
from cradle_jax.data.simulate import SimulationConfig, simulate, write_simulation
from cradle_jax.xla_flags import tune_cpu_backend

# The XLA flags the CLI sets, before any test computes: a CLI run in a subprocess and the library
# in this process then compile the same programs (tests compare their numbers exactly).
tune_cpu_backend()


def make_adata(
    labels: list[str],
    n_genes: int = 12,
    seed: int = 0,
    fail_fraction: float = 0.3,
    qc_in_obs: bool = True,
) -> ad.AnnData:
    """Poisson counts for cells with the given labels; QC metrics in obs with planted fails."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    counts = rng.poisson(3.0, size=(n, n_genes)).astype(np.float32)
    obs = pd.DataFrame({"perturbation": labels}, index=[f"cell{i}" for i in range(n)])
    if qc_in_obs:
        fail = rng.random(n) < fail_fraction
        obs["UMI_count"] = counts.sum(1)
        obs["ngenes"] = (counts > 0).sum(1).astype(float)
        obs["pct_counts_mt"] = np.where(fail, 60.0, 5.0) + rng.random(n)
        obs["pct_counts_ribo"] = 20.0 + rng.random(n)
        obs["pct_counts_hb"] = np.zeros(n)
        obs["predicted_doublet"] = np.zeros(n, dtype=bool)
    var = pd.DataFrame(index=[f"GENE{j}" for j in range(n_genes)])
    return ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=var)


def labels_with_pairs(n_each: int = 30) -> list[str]:
    """Control, four singles and six pairs, n_each cells each."""
    names = ["non-targeting", "A", "B", "C", "D", "A+B", "A+C", "B+C", "B+D", "C+D", "A+D"]
    return [name for name in names for _ in range(n_each)]


@pytest.fixture
def config():
    return data_config()


@pytest.fixture(scope="session")
def sim_path(tmp_path_factory) -> Path:
    """A small simulated dataset with pairs and planted truth, written once per session."""
    sim = simulate(
        SimulationConfig(n_cells=1200, n_genes=120, n_perturbations=5, n_pairs=2, n_latent=4)
    )
    path, _ = write_simulation(sim, tmp_path_factory.mktemp("sim") / "sim.h5ad")
    return path
