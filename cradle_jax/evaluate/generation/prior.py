"""Artifact-free cells from a trained model: the good decoder path, z_b from the prior
(docs/method.md#generation).

The model program itself generates: it is run with the global variables (M, E, A) substituted
by samples from the guide and no observed counts, with every cell on the good path (c = 0, so
cᵀA = 0) and library size ℓ. A call draws S particles of the globals, shared by every label of
the call; each (particle, label) gets its own z_b and one cell. The baselines generate the same
way from their own model program (they have no artifact path to switch off).
"""

import dataclasses
from collections.abc import Iterator
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.multihost_utils import process_allgather
from jax.sharding import Mesh
from numpyro import handlers

from cradle_jax.config import EVAL_LIBRARY
from cradle_jax.models.config import ModelConfig
from cradle_jax.models.families import family_of
from cradle_jax.models.sites import SiteWeights
from cradle_jax.train.mesh import data_mesh, replicate, row_sharded
from cradle_jax.train.objective import sample_global_posterior

_LIBRARY_STREAM = 7  # fold_in index of the key that draws per-cell library sizes


def good_path_batch(dosage: jax.Array, n_qc: int, library) -> dict:
    """A batch of K cells, one per dosage row, on the good path with library size ℓ (a number,
    one per cell (K,), or one per particle and cell (P, K))."""
    K = dosage.shape[0]
    library = jnp.asarray(library, jnp.float32)
    return {
        "D": dosage,
        "qc": jnp.zeros((K, n_qc), jnp.float32),
        "library_size": library if library.ndim == 2 else jnp.broadcast_to(library, (K,)),
        "weight": jnp.ones((K,), jnp.float32),
    }


def cell_libraries(key: jax.Array, library, shape: tuple[int, int]) -> jax.Array:
    """ℓ of each generated cell: `library` itself when it is a number, else a uniform draw
    (with replacement) from its values, e.g. the library sizes of real control cells, so
    generated cells have the depth of the cells they are compared with."""
    library = jnp.asarray(library, jnp.float32)
    if library.ndim == 0:
        return library
    return jax.random.choice(key, library, shape=shape)


@partial(jax.jit, static_argnames=("cfg",))
def sample_good_path(params: dict, dosage: jax.Array, key: jax.Array, library, cfg):
    """(counts, decoder means), each (P, K, G), for P = cfg.n_particles particles of the globals."""
    global_key, model_key = jax.random.split(key)
    global_samples = sample_global_posterior(params, global_key, cfg)
    K = dosage.shape[0]
    unit = SiteWeights.unweighted(cfg, jnp.ones(K))
    library_key = jax.random.fold_in(key, _LIBRARY_STREAM)
    library = cell_libraries(library_key, library, (cfg.n_particles, K))
    batch = good_path_batch(dosage, cfg.n_qc, library)
    substituted = handlers.substitute(family_of(cfg).model, data={**params, **global_samples})
    program = handlers.seed(substituted, model_key)
    site = handlers.trace(program).get_trace(batch, {}, unit, cfg)["x"]
    return site["value"], site["fn"].mean


def chunk_key_groups(
    key_data: np.ndarray, n_chunks: int, mesh: Mesh
) -> Iterator[tuple[range, jax.Array]]:
    """The keys of chunks 0 … n_chunks − 1, mesh.size chunks at a time: (chunk indices, raw key
    data (mesh.size, …) split over the mesh). Chunk c always draws from fold_in(key, c), so what
    a chunk holds does not depend on the number of devices; a last, partial group is padded with
    chunks that are computed and dropped."""
    key = jax.random.wrap_key_data(key_data)
    for first in range(0, n_chunks, mesh.size):
        group = range(first, first + mesh.size)
        keys = np.stack([jax.random.key_data(jax.random.fold_in(key, c)) for c in group])
        real = range(first, min(first + mesh.size, n_chunks))
        yield real, jax.device_put(keys, row_sharded(mesh))


@partial(jax.jit, static_argnames=("cfg",))
def _sample_chunks(params, dosage, keys, library, cfg):
    """(chunks, P, K, G) counts, one chunk per row of raw key data, each as `sample_good_path`."""

    def sample(key_data):
        key = jax.random.wrap_key_data(key_data)
        return sample_good_path(params, dosage, key, library, cfg)[0]

    return jax.vmap(sample)(keys)


def generate_cells(
    params: dict,
    cfg: ModelConfig,
    dosage: np.ndarray,
    n_cells: int,
    key_data: np.ndarray,
    *,
    library: float | np.ndarray = EVAL_LIBRARY,
    chunk: int = 128,
    mesh: Mesh | None = None,
) -> np.ndarray:
    """`n_cells` artifact-free count vectors for each dosage row: (K, n_cells, G) float32.

    `library` is every cell's ℓ, or an array of library sizes each cell draws its ℓ from.
    Particles are drawn `chunk` at a time (one compiled shape), one chunk per device of the mesh
    (default: every device) at once; chunk c uses fold_in(key, c), so the result depends only on
    the key, n_cells and chunk, and cells come back in chunk order on any number of devices.
    """
    mesh = data_mesh() if mesh is None else mesh
    params = replicate(params, mesh)
    dosage = replicate(jnp.asarray(dosage, jnp.float32), mesh)
    library = replicate(jnp.asarray(library, jnp.float32), mesh)
    chunk_cfg = dataclasses.replace(cfg, n_particles=min(chunk, n_cells))
    n_chunks = -(-n_cells // chunk_cfg.n_particles)
    pieces = []
    for chunks, keys in chunk_key_groups(key_data, n_chunks, mesh):
        counts = process_allgather(
            _sample_chunks(params, dosage, keys, library, chunk_cfg), tiled=True
        )
        pieces.extend(counts[: len(chunks)])
    cells = np.concatenate(pieces, axis=0)[:n_cells]
    return cells.transpose(1, 0, 2)
