"""Average treatment effects on the evaluation scale x̃ = log2(1 + 10⁴·x / Σx)
(docs/metrics.md#evaluation-scale).

Model ATE: means over generated artifact-free cells (sampled counts by default, decoder means
with `from_means`) of each label minus control's. Data ATE: means over the dataset's cells of
each label minus control's, QC-pass cells only by default, streamed block by block over the
sparse counts.
"""

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.sharding import Mesh

from cradle_jax.config import EVAL_LIBRARY
from cradle_jax.data.dataset import PerturbData
from cradle_jax.data.errors import DataError
from cradle_jax.data.perturbations import PerturbationVocabulary
from cradle_jax.evaluate.generation.prior import chunk_key_groups, sample_good_path
from cradle_jax.models.config import ModelConfig
from cradle_jax.train.mesh import data_mesh, replicate, row_sharded, to_host

SCALE = 1e4  # x̃ = log2(1 + SCALE · x / Σx)


def evaluation_scale(x: jax.Array) -> jax.Array:
    """x̃ = log2(1 + 10⁴·x/Σ_g x) per cell (last axis = genes); a cell with no counts gives 0."""
    total = jnp.sum(x, axis=-1, keepdims=True)
    return jnp.log2(1.0 + SCALE * x / jnp.where(total > 0, total, 1.0))


@partial(jax.jit, static_argnames=("cfg", "from_means"))
def _group_sums(params, dosage, keys, real, cfg, from_means: bool):
    """(K, G) sums of x̃ over every particle of a group of chunks (one per row of raw key data,
    split over the mesh) whose `real` flag is 1: per-device sums are added across devices."""

    def chunk_sums(key_data):
        key = jax.random.wrap_key_data(key_data)
        counts, means = sample_good_path(params, dosage, key, EVAL_LIBRARY, cfg)
        return jnp.sum(evaluation_scale(means if from_means else counts), axis=0)

    return jnp.einsum("c,ckg->kg", real, jax.vmap(chunk_sums)(keys))


def model_ate(
    params: dict,
    cfg: ModelConfig,
    vocabulary: PerturbationVocabulary,
    labels: list[str],
    key_data: np.ndarray,
    *,
    n_particles: int,
    chunk: int,
    from_means: bool,
    mesh: Mesh | None = None,
) -> np.ndarray:
    """(len(labels), G) model ATE of each label against control (docs/metrics.md#model-ate).

    Control and every label are generated together in each chunk, sharing its global samples;
    chunk c draws from fold_in(key, c), one chunk per device of the mesh (default: every device)
    at once; the same chunks count on any number of devices. `n_particles` is rounded up to
    whole chunks. A run passes its `eval` section's ate_particles, ate_chunk and ate_from_means.
    """
    mesh = data_mesh() if mesh is None else mesh
    control = vocabulary.control_label
    dosage = replicate(jnp.asarray(vocabulary.dosage([control, *labels]).toarray()), mesh)
    params = replicate(params, mesh)
    chunk_cfg = dataclasses.replace(cfg, n_particles=min(chunk, n_particles))
    n_chunks = -(-n_particles // chunk_cfg.n_particles)
    total = None
    for chunks, keys in chunk_key_groups(key_data, n_chunks, mesh):
        real = np.arange(mesh.size) < len(chunks)
        real = jax.device_put(real.astype(np.float32), row_sharded(mesh))
        sums = _group_sums(params, dosage, keys, real, chunk_cfg, from_means)
        total = sums if total is None else total + sums
    means = to_host(total).astype(np.float64) / (n_chunks * chunk_cfg.n_particles)
    return (means[1:] - means[0]).astype(np.float32)


def group_means(
    data: PerturbData, group: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """(n_groups, G) float64 mean evaluation-scale expression of the cells of each group, given
    each cell's group (N,) int (−1: none), streamed block by block (NaN for an empty group), and
    the number of cells behind each row."""
    n_per_group = np.bincount(group[group >= 0], minlength=n_groups)
    sums = np.zeros((n_groups, len(data.gene_names)))
    for start, block in data.counts.blocks():
        rows = slice(start, start + block.shape[0])
        members = group[rows] >= 0
        library = np.maximum(data.library_size[rows][members].astype(np.float64), 1e-12)
        x = sp.csr_matrix(block[members], dtype=np.float64)
        x = sp.diags(SCALE / library) @ x
        x.data = np.log2(1.0 + x.data)
        indicator = sp.csr_matrix(
            (np.ones(members.sum()), (group[rows][members], np.arange(members.sum()))),
            shape=(n_groups, members.sum()),
        )
        sums += np.asarray((indicator @ x).todense())
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / n_per_group[:, None], n_per_group


def label_rows(data: PerturbData, labels: list[str]) -> np.ndarray:
    """(N,) int row of each cell's label in `labels`, −1 for a cell of another label."""
    row_of = {label: i for i, label in enumerate(labels)}
    return np.array([row_of.get(label, -1) for label in data.labels])


def label_means(
    data: PerturbData, labels: list[str], cells: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(len(labels), G) float64 mean evaluation-scale expression of each label's cells among the
    selected `cells` (N,) bool (NaN for a label without such cells), and the number of cells
    behind each row."""
    group = label_rows(data, labels)
    group[~cells] = -1
    return group_means(data, group, len(labels))


def data_ate(data: PerturbData, labels: list[str], qc_pass: bool = True) -> np.ndarray:
    """(len(labels), G) data ATE of each label against control over all splits
    (docs/metrics.md#data-ate).

    With `qc_pass`, only cells passing QC at the run's threshold count. A label (or control)
    without such cells is a DataError naming it.
    """
    wanted = [data.vocabulary.control_label, *labels]
    keep = data.qc.max(axis=1) == 0 if qc_pass else np.ones(data.n_cells, dtype=bool)
    means, n_cells = label_means(data, wanted, keep)
    empty = [wanted[i] for i in np.flatnonzero(n_cells == 0)]
    if empty:
        which = "QC-pass cells" if qc_pass else "cells"
        raise DataError(f"no {which} for {empty[0]!r}: its data ATE is undefined")
    return (means[1:] - means[0]).astype(np.float32)
