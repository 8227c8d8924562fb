"""Artifact-free cells from a trained model (SPEC §5.1): the good decoder path, z_b from the prior.

The model program itself generates: it is run with the global variables (M, E, A) substituted
by samples from the guide and no observed counts, with every cell on the good path (c = 0, so
cᵀA = 0) and library size ℓ. A call draws S particles of the globals, shared by every label of
the call; each (particle, label) gets its own z_b and one cell. The baselines generate the same
way from their own model program (they have no artifact path to switch off).
"""

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from cradle_jax.models.config import ModelConfig
from cradle_jax.models.families import family_of
from cradle_jax.models.sites import SiteWeights
from cradle_jax.train.objective import sample_global_posterior

EVAL_LIBRARY = 1e4  # ℓ of generated cells (§5.1, E3)


def _good_path_batch(dosage: jax.Array, n_qc: int, library: float) -> dict:
    """A batch of K cells, one per dosage row, on the good path with library size ℓ."""
    K = dosage.shape[0]
    return {
        "D": dosage,
        "qc": jnp.zeros((K, n_qc), jnp.float32),
        "library_size": jnp.full((K,), library, jnp.float32),
        "weight": jnp.ones((K,), jnp.float32),
    }


@partial(jax.jit, static_argnames=("cfg",))
def sample_good_path(params: dict, dosage: jax.Array, key: jax.Array, library, cfg):
    """(counts, decoder means), each (P, K, G), for P = cfg.n_particles particles of the globals."""
    global_key, model_key = jax.random.split(key)
    global_samples = sample_global_posterior(params, global_key, cfg)
    K = dosage.shape[0]
    unit = SiteWeights.unweighted(cfg, jnp.ones(K))
    batch = _good_path_batch(dosage, cfg.n_qc, library)
    substituted = handlers.substitute(family_of(cfg).model, data={**params, **global_samples})
    program = handlers.seed(substituted, model_key)
    site = handlers.trace(program).get_trace(batch, {}, unit, cfg)["x"]
    return site["value"], site["fn"].mean


def generate_cells(
    params: dict,
    cfg: ModelConfig,
    dosage: np.ndarray,
    n_cells: int,
    key_data: np.ndarray,
    *,
    library: float = EVAL_LIBRARY,
    chunk: int = 128,
) -> np.ndarray:
    """`n_cells` artifact-free count vectors for each dosage row: (K, n_cells, G) float32.

    Particles are drawn `chunk` at a time (one compiled shape); chunk c uses fold_in(key, c), so
    the result depends only on the key, n_cells and chunk.
    """
    dosage = jnp.asarray(dosage, jnp.float32)
    chunk_cfg = dataclasses.replace(cfg, n_particles=min(chunk, n_cells))
    key = jax.random.wrap_key_data(key_data)
    pieces, drawn = [], 0
    for c in range(-(-n_cells // chunk_cfg.n_particles)):
        counts, _ = sample_good_path(params, dosage, jax.random.fold_in(key, c), library, chunk_cfg)
        take = min(chunk_cfg.n_particles, n_cells - drawn)
        pieces.append(np.asarray(counts[:take]))
        drawn += take
    return np.concatenate(pieces, axis=0).transpose(1, 0, 2)
