"""A short training run on simulated data with the jit train step and no trainer around it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cradle_jax.config import data_config
from cradle_jax.data.batches import iterate_batches
from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.data.simulate import SimulationConfig, simulate
from cradle_jax.train import objective
from cradle_jax.train.inputs import batch_arrays, sized_model_config, split_stats
from cradle_jax.train.state import TrainState
from cradle_jax.train.step import make_train_step
from tests.settings import original_loss, plain_optimizer


@pytest.fixture(scope="module")
def trained():
    sim = simulate(
        SimulationConfig(
            n_cells=3000, n_genes=120, n_perturbations=6, n_pairs=3, n_latent=6, seed=0
        )
    )
    config = data_config()
    config.qc_doublets = False
    data = load_perturb_data(sim.adata, config, seed=0)
    cfg = sized_model_config(
        data,
        n_latent=6,
        n_particles=2,
        decoder_n_hidden=48,
        basal_encoder_n_hidden=48,
        embedding_encoder_n_hidden=24,
        embedding_encoder_n_layers=2,
        mask_prior_prob=0.2,
    )
    loss_cfg = original_loss(alpha="split", cf_kl="reference", beta=0.1)
    stats = {k: jnp.asarray(v) for k, v in split_stats(data, "train").items()}
    first = batch_arrays(next(iterate_batches(data, "train", 256, seed=0)))
    params = jax.jit(objective.init_params, static_argnames="cfg")(
        jax.random.key(0), first, stats, cfg
    )
    optimizer = plain_optimizer(3e-3)
    state = TrainState.create(params, optimizer)
    step = make_train_step(cfg, loss_cfg, optimizer)
    run_key = jax.random.key_data(jax.random.key(1))

    losses = []
    for epoch in range(20):
        for batch in iterate_batches(data, "train", 256, seed=0, epoch=epoch):
            state, loss, _ = step(state, batch_arrays(batch), stats, run_key)
            losses.append(float(loss))
    return np.array(losses), state.params


def test_training_lowers_the_loss_without_nan(trained):
    losses, params = trained
    assert np.isfinite(losses).all()
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))
    first, last = losses[:20].mean(), losses[-20:].mean()
    assert last < 0.85 * first, (first, last)
