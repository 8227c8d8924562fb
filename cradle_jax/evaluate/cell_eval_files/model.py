"""A prediction file and a matching real file that Arc Institute's `cell-eval run` reads as is.

cell-eval compares two AnnData files cell group by cell group. It needs the same genes in the same
order, one perturbation column with the same label set in both files, control cells in both (its
differential expression is against each file's own controls), and log1p-normalised values in X:
a file of whole numbers is silently re-normalised by cell-eval itself, which would put the two
files on different scales. So both files get X = log1p(counts / total · 1e4) with the raw counts
in layers['counts'] and the scale recorded in uns['cradle_jax'].
"""

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cradle_jax.data.counts import InMemoryCounts, check_counts
from cradle_jax.data.dataset import count_source
from cradle_jax.data.errors import DataError
from cradle_jax.data.perturbations import read_labels
from cradle_jax.data.qc import qc_flags, total_qc
from cradle_jax.data.qc_sources import qc_metrics_of
from cradle_jax.evaluate.generation.cells import generated_counts
from cradle_jax.evaluate.generation.names import generated_cell_names
from cradle_jax.train.bundle import ModelBundle
from cradle_jax.train.keys import purpose_key

PERTURBATION_COLUMN = "target_gene"  # what `cell-eval run --pert-col` defaults to
TARGET_SUM = 1e4
CONTROL_SOURCES = ("generated", "real")


@dataclass(frozen=True)
class PredictionPair:
    """The two files' AnnData: predicted cells, and the real cells of the same labels."""

    prediction: ad.AnnData
    real: ad.AnnData


def log_normalized(counts: sp.csr_matrix, target_sum: float = TARGET_SUM) -> sp.csr_matrix:
    """log1p(counts / total · target_sum) per cell, no clipping; a cell with no count stays 0."""
    counts = sp.csr_matrix(counts, dtype=np.float32)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    normalized = sp.diags(scale.astype(np.float32)) @ counts
    return sp.csr_matrix(normalized.log1p(), dtype=np.float32)


def prediction_pair(
    bundle: ModelBundle,
    real: ad.AnnData,
    perturbations: list[str],
    *,
    n_cells: int,
    seed: int,
    controls: str = "generated",
    perturbation_column: str = PERTURBATION_COLUMN,
    library: float | None = None,
) -> PredictionPair:
    """`n_cells` artifact-free predicted cells per perturbation (canonical labels) and control,
    beside the real cells of those labels; controls in the prediction are generated or copied
    from the real file (`controls`). DataError if the real file lacks a gene or a label.

    Each generated cell's library size is drawn from those of the real file's QC-pass control
    cells (over the model's genes), so predicted and real cells have the same depth, or is
    `library` for every cell."""
    if controls not in CONTROL_SOURCES:
        raise DataError(f"--controls must be one of {', '.join(CONTROL_SOURCES)}, got {controls!r}")
    control = bundle.vocabulary.control_label
    labels = [control, *dict.fromkeys(p for p in perturbations if p != control)]
    real_part = real_cells(bundle, real, labels, perturbation_column)

    generated_labels = labels if controls == "generated" else labels[1:]
    depth, depth_record = _generation_depth(bundle, real, real_part, perturbation_column, library)
    counts, cell_labels = generated_counts(
        bundle, generated_labels, n_cells, key_data=purpose_key(seed, "predict"), library=depth
    )
    prediction = _annotated(
        counts, cell_labels, generated_cell_names(cell_labels), bundle, labels, perturbation_column
    )
    if controls == "real":
        real_controls = real_part[real_part.obs[perturbation_column] == control]
        prediction = ad.concat([real_controls, prediction], merge="same")
        prediction.obs[perturbation_column] = pd.Categorical(
            prediction.obs[perturbation_column].astype(str), categories=labels
        )
    provenance = {
        "source": "model",
        "target_sum": TARGET_SUM,
        "transform": "log1p",
        "counts_layer": "counts",
        "perturbation_column": perturbation_column,
        "control_label": control,
        "controls": controls,
        "seed": seed,
        "generated_library_size": depth_record,
        "generated_cells_per_label": n_cells,
        "versions": bundle.versions,
    }
    prediction.uns["cradle_jax"] = {**provenance, "file": "prediction"}
    real_part.uns["cradle_jax"] = {**provenance, "file": "real"}
    return PredictionPair(prediction, real_part)


def _generation_depth(bundle, real, real_part, perturbation_column, library):
    """The library sizes generated cells draw from, and how `uns` records them."""
    if library is not None:
        return float(library), {"fixed": float(library)}
    control = bundle.vocabulary.control_label
    is_control = (real_part.obs[perturbation_column] == control).to_numpy()
    rows = np.flatnonzero(real.obs_names.isin(real_part.obs_names[is_control]))
    passed, _ = qc_pass_of(bundle, real, rows)
    controls = real_part[real_part.obs_names[is_control][passed]]
    sizes = np.asarray(controls.layers["counts"].sum(axis=1), dtype=np.float64).ravel()
    sizes = sizes[sizes > 0]
    if sizes.size == 0:
        raise DataError(
            "no QC-pass control cell with counts in the real file to take the depth of "
            "generated cells from; give --library N"
        )
    record = {
        "drawn_from": "the real file's QC-pass control cells (counts over the model's genes)",
        "cells": int(sizes.size),
        "median": float(np.median(sizes)),
    }
    return sizes.astype(np.float32), record


def qc_pass_of(bundle: ModelBundle, real: ad.AnnData, rows: np.ndarray) -> tuple[np.ndarray, str]:
    """(len(rows),) bool QC pass of those cells under the model's thresholds, and where the
    metrics came from; metrics computed on every gene of the file, as the loader does."""
    data = bundle.config.data
    cells = real[rows]
    metrics = qc_metrics_of(cells, count_source(cells, data.layer), data, bundle.config.seed)
    flags = qc_flags(metrics.table, bundle.qc_thresholds, data.qc_threshold, doublets=True)
    return total_qc(flags) == 0, metrics.source


def real_cells(
    bundle: ModelBundle, real: ad.AnnData, labels: list[str], perturbation_column: str
) -> ad.AnnData:
    """The real file's cells of `labels` over the model's genes, in the model's gene order."""
    data = bundle.config.data
    genes = pd.Index(real.var_names.astype(str))
    missing = pd.Index(bundle.gene_names.astype(str)).difference(genes)
    if len(missing):
        shown = ", ".join(map(repr, missing[:3].tolist()))
        raise DataError(
            f"the real file lacks {len(missing)} of the model's genes (e.g. {shown}); "
            "cell-eval needs the same genes in both files"
        )
    cell_labels, _ = read_labels(
        real.obs, data.perturbation_key, data.separator, data.control_label
    )
    present = set(cell_labels)
    absent = [label for label in labels if label not in present]
    if absent:
        raise DataError(
            f"the real file has no cell of {', '.join(map(repr, absent[:3]))}"
            f"{' and more' if len(absent) > 3 else ''}; cell-eval needs every predicted "
            "perturbation in the real file"
        )
    rows = np.flatnonzero(np.isin(cell_labels, labels))
    source = count_source(real, data.layer)
    counts = source.matrix[rows][:, genes.get_indexer(bundle.gene_names.astype(str))]
    check_counts(InMemoryCounts(counts), "the real file")
    return _annotated(
        counts,
        cell_labels[rows],
        real.obs_names[rows].astype(str),
        bundle,
        labels,
        perturbation_column,
    )


def _annotated(
    counts: sp.csr_matrix,
    cell_labels: np.ndarray,
    cell_names,
    bundle: ModelBundle,
    labels: list[str],
    perturbation_column: str,
) -> ad.AnnData:
    obs = pd.DataFrame(
        {perturbation_column: pd.Categorical(cell_labels.astype(str), categories=labels)},
        index=pd.Index(list(cell_names)),
    )
    adata = ad.AnnData(
        X=log_normalized(counts),
        obs=obs,
        var=pd.DataFrame(index=pd.Index(bundle.gene_names.astype(str))),
    )
    adata.layers["counts"] = sp.csr_matrix(counts, dtype=np.float32)
    return adata
