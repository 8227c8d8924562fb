"""A small simulated dataset on disk and a tiny experiment config for the trainer tests."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import ml_collections
import orbax.checkpoint as ocp
import pytest

from cradle_jax.config import load_config_file
from tests import tiny_model

ROOT = Path(__file__).parents[2]
CONFIGS = ROOT / "experiments" / "configs"

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


def tiny_config(data_path: Path, **overrides) -> ml_collections.ConfigDict:
    """The default config shrunk to seconds per run; `overrides` as {"train.max_steps": 5}."""
    config = load_config_file(CONFIGS / "default.py")
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


def start_training(flags: list[str], workdir: Path, *extra: str) -> subprocess.Popen:
    """`cradle-jax train` in a new process on one CPU device, output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "cradle_jax", "train", *flags, f"--workdir={workdir}", *extra],
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def saved_params(workdir: Path) -> dict:
    """The parameters of a workdir's latest checkpoint on this process's first device.

    The checkpoint may come from a mesh of other devices (8 fake ones, two processes).
    """
    directory = (Path(workdir) / "checkpoints" / "latest").absolute()
    handlers = {"state": ocp.StandardCheckpointHandler()}
    with ocp.CheckpointManager(directory, item_handlers=handlers) as manager:
        step = manager.latest_step()
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        target = jax.tree.map(
            lambda meta: jax.ShapeDtypeStruct(meta.shape, meta.dtype, sharding=device),
            manager.item_metadata(step)["state"].tree,
        )
        restored = manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
        )
    return restored["state"]["params"]


@pytest.fixture(scope="session")
def reference_run(sim_path, tmp_path_factory) -> Path:
    """An uninterrupted single-process run of `tiny_config` that other runs must reproduce."""
    from cradle_jax.train.loop import train_and_evaluate

    workdir = tmp_path_factory.mktemp("reference")
    train_and_evaluate(tiny_config(sim_path), workdir)
    return workdir


@pytest.fixture
def cfg():
    """The tiny CRADLE model of the objective tests (`tests.tiny_model`)."""
    return tiny_model.tiny_config()


@pytest.fixture
def batch():
    return tiny_model.tiny_batch()


@pytest.fixture
def stats():
    return tiny_model.tiny_stats()
