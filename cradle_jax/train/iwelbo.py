"""The predictive IWELBO of a split: how well held-out cells are explained.

Its definition: docs/metrics.md#iwelbo.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from cradle_jax.data.batches import batch_indices, build_local_batch
from cradle_jax.data.dataset import PerturbData
from cradle_jax.models.config import ModelConfig
from cradle_jax.train.inputs import batch_arrays, split_stats
from cradle_jax.train.mesh import global_batch, local_rows, replicate, to_host
from cradle_jax.train.objective import predictive_iwelbo, sample_global_posterior


def split_iwelbo(
    params: dict,
    data: PerturbData,
    split: str,
    cfg: ModelConfig,
    mesh: Mesh,
    *,
    n_particles: int,
    batch_size: int,
    key_data: np.ndarray,
) -> float:
    """Mean per-cell predictive IWELBO of `split` with `n_particles` shared global samples.

    The batch size is rounded up to a multiple of the device count.
    """
    cfg = dataclasses.replace(cfg, n_particles=n_particles)
    batch_size = -(-batch_size // mesh.size) * mesh.size

    @jax.jit
    def globals_of(params, key_data):
        return sample_global_posterior(params, jax.random.wrap_key_data(key_data), cfg)

    @jax.jit
    def per_cell_sum(params, global_samples, batch, stats, key_data, i):
        key = jax.random.fold_in(jax.random.wrap_key_data(key_data), i)
        return jnp.sum(predictive_iwelbo(params, global_samples, batch, stats, key, cfg))

    global_key, cell_key = jax.random.split(jax.random.wrap_key_data(key_data))
    global_key = replicate(np.asarray(jax.random.key_data(global_key)), mesh)
    global_samples = globals_of(params, global_key)
    cell_key = replicate(np.asarray(jax.random.key_data(cell_key)), mesh)
    stats = replicate(split_stats(data, split), mesh)
    rows = local_rows(mesh, batch_size)
    total, n_cells = 0.0, 0
    for i, index in enumerate(batch_indices(data, split, batch_size, seed=0, shuffle=False)):
        local = batch_arrays(build_local_batch(data, index, rows))
        batch = global_batch(local, mesh, batch_size)
        value = per_cell_sum(params, global_samples, batch, stats, cell_key, i)
        total += float(to_host(value))
        n_cells += int((index >= 0).sum())
    return total / max(n_cells, 1)
