"""A tiny trained run on simulated data (with its planted truth) shared by the evaluation tests."""

import pytest

from cradle_jax.data.simulate import SimulationConfig, simulate, write_simulation
from cradle_jax.train.loop import train_and_evaluate
from tests.train.conftest import tiny_config

SMALL_EVAL = {"ate_particles": 64, "ate_chunk": 32, "qc_cells": 20, "iwelbo_particles": 8}


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    sim = simulate(
        SimulationConfig(n_cells=1200, n_genes=120, n_perturbations=5, n_pairs=3, n_latent=4)
    )
    path, _ = write_simulation(sim, tmp_path_factory.mktemp("sim") / "sim.h5ad")
    config = tiny_config(path, **{"data.split": "combinations"})
    config.eval.update(SMALL_EVAL)
    workdir = tmp_path_factory.mktemp("run")
    train_and_evaluate(config, workdir)
    return workdir
