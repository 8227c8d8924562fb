"""A small simulated dataset on disk and a tiny experiment config for the trainer tests."""

import importlib.util
from pathlib import Path

import ml_collections
import orbax.checkpoint as ocp
import pytest

from cradle_jax.data.simulate import SimulationConfig, simulate, write_simulation

CONFIGS = Path(__file__).parents[2] / "experiments" / "configs"

TINY = {
    "data.qc_doublets": False,
    "model.n_latent": 4,
    "model.n_particles": 2,
    "model.decoder_n_hidden": 16,
    "model.basal_encoder_n_hidden": 16,
    "model.embedding_encoder_n_hidden": 16,
    "model.embedding_encoder_n_layers": 2,
    "model.mask_prior_prob": 0.2,
    "loss.alpha": "split",
    "loss.beta": 0.1,
    "train.batch_size": 80,  # 768 training cells: 10 batches, the last one padded
    "train.learning_rate": 3e-3,
    "train.max_epochs": 3,
    "train.checkpoint_every_steps": 4,
    "train.log_every_steps": 5,
    "train.iwelbo_particles": 0,
}


def load_config(name: str = "default") -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location(name, CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def tiny_config(data_path: Path, **overrides) -> ml_collections.ConfigDict:
    """The default config shrunk to seconds per run; `overrides` as {"train.max_steps": 5}."""
    config = load_config()
    for name, value in {"data.path": str(data_path), **TINY, **overrides}.items():
        section, field = name.split(".")
        config[section][field] = value
    return config


def cli_overrides(data_path: Path, **overrides) -> list[str]:
    """The same config as `tiny_config`, as `cradle-jax train` flags."""
    values = {"data.path": str(data_path), **TINY, **overrides}
    return [f"--config={CONFIGS / 'default.py'}"] + [
        f"--config.{name}={value}" for name, value in values.items()
    ]


def saved_params(workdir: Path) -> dict:
    """The parameters of a workdir's latest checkpoint, as host arrays."""
    with ocp.CheckpointManager((Path(workdir) / "checkpoints" / "latest").absolute()) as manager:
        restored = manager.restore(
            manager.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore())
        )
    return restored["state"]["params"]


@pytest.fixture(scope="session")
def sim_path(tmp_path_factory) -> Path:
    sim = simulate(
        SimulationConfig(n_cells=1200, n_genes=120, n_perturbations=5, n_pairs=2, n_latent=4)
    )
    path, _ = write_simulation(sim, tmp_path_factory.mktemp("sim") / "sim.h5ad")
    return path
