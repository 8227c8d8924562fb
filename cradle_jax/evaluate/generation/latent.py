"""Basal latent states of real cells: the mean of q(z_b | x, d, c) from the guide
(docs/method.md#cradle-guide).

For the baselines it is their per-cell latent: SAMS-VAE's basal state, the cVAE's and SVAE+'s z.
"""

import dataclasses
from collections.abc import Iterable, Iterator
from functools import partial

import anndata as ad
import jax
import numpy as np
import pandas as pd
from numpyro import handlers

from cradle_jax.data.batches import build_batch, pad_rows
from cradle_jax.data.counts import check_counts
from cradle_jax.data.dataset import PerturbData, count_source, qc_matrix_of
from cradle_jax.data.errors import DataError
from cradle_jax.data.qc import qc_flags
from cradle_jax.data.qc_sources import qc_metrics_of
from cradle_jax.models.families import check_dosage, family_of
from cradle_jax.models.sites import SiteWeights
from cradle_jax.train.bundle import ModelBundle
from cradle_jax.train.inputs import batch_arrays


@partial(jax.jit, static_argnames=("cfg",))
def _posterior_means(params, batch, stats, key, cfg):
    B = batch["X"].shape[0]
    unit = SiteWeights.unweighted(cfg, batch["weight"])
    program = handlers.seed(handlers.substitute(family_of(cfg).guide, data=params), key)
    trace = handlers.trace(program).get_trace(batch, stats, unit, cfg)
    return trace["z_loc"]["value"].reshape(-1, B, cfg.n_latent)[0]


def _encode(
    bundle: ModelBundle, batches: Iterable[tuple[int, dict]], key_data: np.ndarray
) -> np.ndarray:
    """Posterior means of z_b for each (real rows, padded batch) in turn, one draw of the global
    variables per batch (batch i from fold_in(key, i)), standardised with the model's statistics."""
    cfg = dataclasses.replace(bundle.cfg, n_particles=1)
    stats = {"norm_mean": bundle.normalization.mean, "norm_std": bundle.normalization.std}
    key = jax.random.wrap_key_data(key_data)
    pieces = []
    for i, (n_real, batch) in enumerate(batches):
        z = _posterior_means(bundle.params, batch, stats, jax.random.fold_in(key, i), cfg)
        pieces.append(np.asarray(z)[:n_real])
    return np.concatenate(pieces)


def basal_latents(
    bundle: ModelBundle,
    data: PerturbData,
    cells: np.ndarray,
    key_data: np.ndarray,
    batch_size: int = 512,
) -> np.ndarray:
    """(len(cells), L) posterior means of z_b of the model's own training data, one draw of the
    global variables per batch; inputs standardised with the model's training statistics."""
    batches = (
        (len(index), batch_arrays(build_batch(data, index, pad_to=batch_size)))
        for index in (
            cells[start : start + batch_size] for start in range(0, len(cells), batch_size)
        )
    )
    return _encode(bundle, batches, key_data)


def real_cell_batches(
    bundle: ModelBundle, adata: ad.AnnData, batch_size: int = 512
) -> Iterator[tuple[int, dict]]:
    """(real rows, padded batch) of any cells, read as the model's training data was.

    Genes are matched to the model's by name (extra genes are ignored for the encoder but kept
    for the QC metrics), perturbations are parsed with the model's vocabulary (an unknown one
    is a DataError naming it), and QC flags use the model's thresholds at its t. Every check
    runs before the first batch is returned.
    """
    config = bundle.config.data
    counts = count_source(adata, config.layer)
    check_counts(counts, "counts")
    genes = pd.Index(np.asarray(adata.var_names, dtype=str))
    missing = [g for g in bundle.gene_names.astype(str) if g not in genes]
    if missing:
        raise DataError(
            f"{len(missing)} of the model's {len(bundle.gene_names)} genes are missing from the "
            f"AnnData (e.g. {missing[0]!r})"
        )
    columns = genes.get_indexer(bundle.gene_names.astype(str))
    if config.perturbation_key not in adata.obs.columns:
        raise DataError(f"obs has no perturbation column {config.perturbation_key!r}")
    labels = [bundle.vocabulary.canonical(str(v)) for v in adata.obs[config.perturbation_key]]
    dosage = bundle.vocabulary.dosage(labels).toarray()
    check_dosage(bundle.cfg, dosage, labels)
    metrics = qc_metrics_of(adata, counts, config, bundle.config.seed)
    flags = qc_flags(metrics.table, bundle.qc_thresholds, config.qc_threshold)
    qc, _ = qc_matrix_of(flags, config.qc_mode)

    def batches():
        for start in range(0, adata.n_obs, batch_size):
            rows = np.arange(start, min(start + batch_size, adata.n_obs))
            x = counts.rows(rows)[:, columns].toarray().astype(np.float32)
            yield (
                len(rows),
                {
                    "X": pad_rows(x, batch_size),
                    "D": pad_rows(dosage[rows].astype(np.float32), batch_size),
                    "qc": pad_rows(qc[rows], batch_size),
                    "reference_X": np.zeros((batch_size, x.shape[1]), np.float32),
                    "library_size": pad_rows(x.sum(axis=1), batch_size),
                    "weight": pad_rows(np.ones(len(rows), np.float32), batch_size),
                },
            )

    return batches()


def encode_cells(
    bundle: ModelBundle, adata: ad.AnnData, key_data: np.ndarray, batch_size: int = 512
) -> np.ndarray:
    """(N, L) posterior means of z_b for any cells (see `real_cell_batches` for how they are
    read)."""
    return _encode(bundle, real_cell_batches(bundle, adata, batch_size), key_data)
