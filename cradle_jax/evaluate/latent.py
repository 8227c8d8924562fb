"""Basal latent states of real cells: the mean of q(z_b | x, d, c) from the guide (SPEC §2.1)."""

import dataclasses
from functools import partial

import jax
import numpy as np
from numpyro import handlers

from cradle_jax.data.batches import build_batch
from cradle_jax.data.dataset import PerturbData
from cradle_jax.models.cradle import SiteWeights, guide
from cradle_jax.train.bundle import ModelBundle
from cradle_jax.train.inputs import batch_arrays


@partial(jax.jit, static_argnames=("cfg",))
def _posterior_means(params, batch, stats, key, cfg):
    B = batch["X"].shape[0]
    unit = SiteWeights(
        perturbation=jax.numpy.ones(cfg.n_perturbations),
        qc=jax.numpy.ones(cfg.n_qc),
        cell=batch["weight"],
        reconstruction=batch["weight"],
    )
    program = handlers.seed(handlers.substitute(guide, data=params), key)
    trace = handlers.trace(program).get_trace(batch, stats, unit, cfg, counterfactual=False)
    return trace["z_loc"]["value"].reshape(-1, B, cfg.n_latent)[0]


def basal_latents(
    bundle: ModelBundle,
    data: PerturbData,
    cells: np.ndarray,
    key_data: np.ndarray,
    batch_size: int = 512,
) -> np.ndarray:
    """(len(cells), L) posterior means of z_b of the model's own training data, one draw of the
    global variables per batch; inputs standardised with the model's training statistics."""
    cfg = dataclasses.replace(bundle.cfg, n_particles=1)
    params = bundle.params
    stats = {"norm_mean": bundle.normalization.mean, "norm_std": bundle.normalization.std}
    key = jax.random.wrap_key_data(key_data)
    pieces = []
    for i, start in enumerate(range(0, len(cells), batch_size)):
        index = cells[start : start + batch_size]
        batch = batch_arrays(build_batch(data, index, pad_to=batch_size))
        z = _posterior_means(params, batch, stats, jax.random.fold_in(key, i), cfg)
        pieces.append(np.asarray(z)[: len(index)])
    return np.concatenate(pieces)
