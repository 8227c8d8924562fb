"""A tiny CRADLE configuration, batch and statistics shared by the objective tests (tests/train)
and the ATE tests (tests/evaluate)."""

import jax
import jax.numpy as jnp
import numpy as np

from cradle_jax.models.config import ModelConfig, default_model_config
from cradle_jax.train import objective

jax.config.update("jax_enable_x64", False)

# Compiled once per shape and config, for every test module that uses them: eager NumPyro
# tracing is ~10x slower than compiling.
training_loss = jax.jit(objective.training_loss, static_argnames=("cfg", "loss_cfg"))
init_params = jax.jit(objective.init_params, static_argnames=("cfg",))


def tiny_config(**overrides) -> ModelConfig:
    base = dict(
        n_genes=7,
        n_perturbations=3,
        n_qc=1,
        n_latent=4,
        n_particles=2,
        decoder_n_hidden=6,
        basal_encoder_n_hidden=5,
        embedding_encoder_n_hidden=5,
        embedding_encoder_n_layers=2,
        mask_prior_prob=0.2,
    )
    base.update(overrides)
    return default_model_config(**base)


def tiny_batch(seed: int = 0, n_cells: int = 6, n_qc: int = 1, pad: int = 1) -> dict:
    """Cells: control, singles, a pair, fail and pass cells, references, `pad` padding rows."""
    n = n_cells + pad
    X = np.random.default_rng(seed).poisson(2.0, size=(n, 7)).astype(np.float32)
    D = np.zeros((n, 3), np.float32)
    D[1, 0] = D[2, 1] = D[3, 2] = 1
    D[4, [0, 1]] = 1
    D[5, 2] = 1
    qc = np.zeros((n, n_qc), np.float32)
    qc[[1, 4], 0] = 1
    if n_qc > 1:
        qc[5, 1] = 1
    reference_X = np.random.default_rng(seed + 1).poisson(2.0, size=(n, 7)).astype(np.float32)
    reference_X[2] = 0  # no reference for cell 2
    weight = np.ones(n, np.float32)
    X[n_cells:] = D[n_cells:] = qc[n_cells:] = reference_X[n_cells:] = 0
    weight[n_cells:] = 0
    return {
        "X": jnp.asarray(X),
        "D": jnp.asarray(D),
        "qc": jnp.asarray(qc),
        "reference_X": jnp.asarray(reference_X),
        "library_size": jnp.asarray(X.sum(1)),
        "weight": jnp.asarray(weight),
    }


def tiny_stats(n_qc: int = 1) -> dict:
    return {
        "obs_dosage": jnp.asarray([3.0, 2.0, 4.0]),
        "obs_qc": jnp.full((n_qc,), 3.0),
        "norm_mean": jnp.linspace(0.5, 1.5, 7),
        "norm_std": jnp.linspace(0.8, 1.2, 7),
        "fail_fraction": jnp.asarray(0.25),
    }
