"""Turn one AnnData (.h5ad or in memory) into `PerturbData`, the immutable input of training.

The steps follow SPEC A6 and §4: validate counts and names, read perturbation labels, QC metrics
and MAD flags, splits, counterfactual references, training-split normalisation statistics and
per-split obs-count vectors.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import h5py
import ml_collections
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cradle_jax.data import qc as qc_rules
from cradle_jax.data import references as refs
from cradle_jax.data import splits
from cradle_jax.data.counts import (
    BackedCounts,
    CachedRows,
    CountSource,
    InMemoryCounts,
    check_counts,
)
from cradle_jax.data.errors import DataError
from cradle_jax.data.perturbations import PerturbationVocabulary, read_labels
from cradle_jax.data.seeding import host_rng
from cradle_jax.data.statistics import LogStandardizeStats, ObsCounts, log_standardize_stats
from cradle_jax.data.statistics import obs_counts as count_obs

log = logging.getLogger(__name__)

QC_BLOCK = 20_000  # cells per QC-metric / Scrublet block (exact kNN grows ~ n^2)


@dataclass(frozen=True)
class PerturbData:
    """Everything the model needs about one dataset, host-side; counts stay sparse or on disk.

    Shapes: N cells, G genes, T single perturbations, Q QC columns, K reference samples.
    """

    counts: CountSource  # (N, G) raw counts
    cell_names: np.ndarray  # (N,)
    gene_names: np.ndarray  # (G,)
    labels: np.ndarray  # (N,) canonical treatment labels
    vocabulary: PerturbationVocabulary
    dosage: sp.csr_matrix  # (N, T) float32
    qc_metrics: qc_rules.QCMetrics
    qc_thresholds: qc_rules.QCThresholds
    qc_columns: tuple[str, ...]  # names of the Q columns of `qc`
    qc: np.ndarray  # (N, Q) float32, 1 = QC fail
    split: np.ndarray  # (N,) int8 split codes
    references: np.ndarray  # (N, K) int32 row indices, NO_REFERENCE-padded
    reference_rows: InMemoryCounts | CachedRows  # where reference rows are read from
    library_size: np.ndarray  # (N,) float32, sum of the modelled genes
    normalization: LogStandardizeStats
    obs_counts: dict[str, ObsCounts]  # per split name

    @property
    def n_cells(self) -> int:
        return len(self.cell_names)

    def cells(self, split: str) -> np.ndarray:
        """Row indices of the cells of one split ("train", "val", "test")."""
        return np.flatnonzero(self.split == splits.SPLIT_CODES[split])

    def summary(self) -> dict:
        """A JSON-able description a person can read: sizes, QC fail rates, split sizes."""
        fail = self.qc.max(axis=1) > 0
        return {
            "cells": self.n_cells,
            "genes": len(self.gene_names),
            "perturbations": self.vocabulary.size,
            "treatments": len(np.unique(self.labels)),
            "qc_metrics_source": self.qc_metrics.source,
            "qc_unavailable": dict(self.qc_metrics.unavailable),
            "qc_columns": list(self.qc_columns),
            "qc_fail_fraction": float(fail.mean()),
            "split_cells": {name: len(self.cells(name)) for name in splits.SPLIT_CODES},
            "unused_cells": int((self.split == splits.UNUSED).sum()),
            "cells_without_reference": int((self.references[:, 0] == refs.NO_REFERENCE).sum()),
        }


def read_h5ad(path: str | Path, backed: bool = False) -> ad.AnnData:
    """Open an .h5ad with errors that name the file and the problem."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a directory, not an .h5ad file")
    if not path.is_file():
        raise DataError(f"input file {path} does not exist")
    if not h5py.is_hdf5(path):
        raise DataError(f"{path} is not an HDF5 (.h5ad) file")
    try:
        return ad.read_h5ad(path, backed="r" if backed else None)
    except Exception as err:  # anndata raises many types for damaged files
        raise DataError(f"{path} could not be read as AnnData: {err}".splitlines()[0]) from err


def load_perturb_data(
    source: str | Path | ad.AnnData, config: ml_collections.ConfigDict, seed: int
) -> PerturbData:
    """Build PerturbData from a path or an AnnData with the `data` config section."""
    adata = read_h5ad(source, config.backed) if isinstance(source, str | Path) else source
    counts = count_source(adata, config.layer)
    where = f"counts ({'layer ' + repr(config.layer) if config.layer else 'X'})"
    _check_names(adata)
    library = check_counts(counts, where)
    if not library.any():
        raise DataError(f"{where} are all zero: no cell has a single count")

    labels, vocab = read_labels(
        adata.obs, config.perturbation_key, config.separator, config.control_label
    )
    treatments, treatment_of_cell = np.unique(labels, return_inverse=True)
    dosage = vocab.dosage(treatments.tolist())[treatment_of_cell]
    metrics = qc_metrics_of(adata, counts, config, seed)
    thresholds = qc_rules.fit_thresholds(metrics)
    flags = qc_rules.qc_flags(metrics.table, thresholds, config.qc_threshold)
    qc_matrix, qc_columns = qc_matrix_of(flags, config.qc_mode)
    fail = qc_rules.total_qc(flags).astype(bool)

    split_seed = seed if config.split_seed < 0 else config.split_seed
    split = _split(adata.obs, labels, dosage, config, split_seed)
    _check_split(split, labels, vocab, dosage)
    groups = _reference_groups(adata.obs, labels, config.reference_group_key)
    references = refs.sample_references(
        groups, fail, split, config.references, seed, config.n_reference_samples
    )
    train = np.flatnonzero(split == splits.TRAIN)
    return PerturbData(
        counts=counts,
        cell_names=np.asarray(adata.obs_names, dtype=object),
        gene_names=np.asarray(adata.var_names, dtype=object),
        labels=labels,
        vocabulary=vocab,
        dosage=dosage.astype(np.float32),
        qc_metrics=metrics,
        qc_thresholds=thresholds,
        qc_columns=qc_columns,
        qc=qc_matrix,
        split=split,
        references=references,
        reference_rows=(
            CachedRows(counts, references[references != refs.NO_REFERENCE])
            if isinstance(counts, BackedCounts)
            else counts
        ),
        library_size=library.astype(np.float32),
        normalization=log_standardize_stats(counts, train),
        obs_counts={
            name: count_obs(dosage, qc_matrix, np.flatnonzero(split == code))
            for name, code in splits.SPLIT_CODES.items()
        },
    )


def count_source(adata: ad.AnnData, layer: str) -> CountSource:
    if layer and layer not in adata.layers:
        raise DataError(
            f"layer {layer!r} not found (layers: {', '.join(adata.layers) or 'none'}); "
            "set data.layer to the layer holding raw counts, or '' for X"
        )
    if adata.isbacked:
        if layer:
            raise DataError("backed reading takes counts from X; move the counts layer to X")
        return BackedCounts(adata.filename, "X")
    matrix = adata.layers[layer] if layer else adata.X
    if matrix is None:
        raise DataError("the AnnData has no X matrix; set data.layer to the counts layer")
    real = np.issubdtype(matrix.dtype, np.integer) or np.issubdtype(matrix.dtype, np.floating)
    if not real and matrix.dtype != bool:
        raise DataError(f"counts have dtype {matrix.dtype}; real-valued raw counts are required")
    return InMemoryCounts(sp.csr_matrix(matrix, dtype=np.float32))


def _check_names(adata: ad.AnnData) -> None:
    for what, names, fix in (
        ("cell", adata.obs_names, "obs_names_make_unique"),
        ("gene", adata.var_names, "var_names_make_unique"),
    ):
        duplicated = pd.Index(names)[pd.Index(names).duplicated()]
        if len(duplicated):
            shown = ", ".join(map(repr, duplicated[:3].tolist()))
            raise DataError(
                f"{len(duplicated)} duplicate {what} names (e.g. {shown}); call adata.{fix}()"
            )


def qc_metrics_of(
    adata: ad.AnnData, counts: CountSource, config: ml_collections.ConfigDict, seed: int
) -> qc_rules.QCMetrics:
    """QC metrics of every cell: from obs when all six are there, else computed by row block."""
    from_obs = qc_rules.qc_metrics_from_obs(adata.obs)
    if from_obs is not None:
        return from_obs
    present = [m for m in qc_rules.QC_METRICS if m in adata.obs.columns]
    if present:
        log.warning("obs has only some QC metrics (%s); computing all six", ", ".join(present))
    # Equal row blocks of at most QC_BLOCK cells, so a backed file is never loaded whole and no
    # small tail block is too small for Scrublet, which runs per block as it would per sample.
    n_cells = counts.shape[0]
    blocks = np.array_split(np.arange(n_cells), -(-n_cells // QC_BLOCK))
    block_seeds = host_rng(seed, "qc").integers(0, 2**31, size=len(blocks))
    parts = [
        qc_rules.compute_qc_metrics(
            counts.rows(rows),
            adata.var_names,
            adata.obs_names[rows],
            seed=int(block_seed),
            doublets=config.qc_doublets,
        )
        for rows, block_seed in zip(blocks, block_seeds, strict=True)
    ]
    unavailable = {}
    for part in parts:
        unavailable.update(part.unavailable)
    columns = [m for m in qc_rules.QC_METRICS if m not in unavailable]
    table = pd.concat([part.table[columns] for part in parts])
    return qc_rules.QCMetrics(table=table, unavailable=unavailable, source="computed")


def qc_matrix_of(flags: pd.DataFrame, mode: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """The model's (N, Q) QC input c: one "fail any" column (total) or one per criterion (each)."""
    if mode == "total":
        return qc_rules.total_qc(flags).astype(np.float32)[:, None], ("total_qc",)
    if mode == "each":
        return flags.to_numpy(dtype=np.float32), tuple(flags.columns)
    raise DataError(f"data.qc_mode must be 'total' or 'each', got {mode!r}")


def _split(
    obs: pd.DataFrame,
    labels: np.ndarray,
    dosage: sp.csr_matrix,
    config: ml_collections.ConfigDict,
    seed: int,
) -> np.ndarray:
    if config.split == "random":
        return splits.random_split(len(labels), seed)
    if config.split == "combinations":
        n_members = np.asarray(dosage.sum(axis=1)).ravel()  # multi-hot: singles per cell
        return splits.combinations_split(labels, n_members, seed, config.frac_combinations_train)
    if config.split == "column":
        return splits.column_split(obs, config.split_column)
    raise DataError(f"data.split must be random, combinations or column, got {config.split!r}")


def _check_split(
    split: np.ndarray, labels: np.ndarray, vocab: PerturbationVocabulary, dosage: sp.csr_matrix
) -> None:
    for name in ("train", "val"):
        if not (split == splits.SPLIT_CODES[name]).any():
            raise DataError(f"the {name} split has no cells ({len(labels)} cells in all)")
    seen = np.asarray(dosage[split == splits.TRAIN].sum(axis=0)).ravel() > 0
    if not seen.all():
        missing = [vocab.singles[i] for i in np.flatnonzero(~seen)]
        raise DataError(
            f"perturbation {missing[0]!r} has no cells in the training split "
            f"({len(missing)} such); it cannot be learned"
        )


def _reference_groups(obs: pd.DataFrame, labels: np.ndarray, key: str) -> np.ndarray:
    if not key:
        return labels
    if key not in obs.columns:
        raise DataError(f"reference group column {key!r} not in obs (data.reference_group_key)")
    groups = obs[key]
    if groups.isna().any():
        raise DataError(f"reference group column {key!r} has missing values")
    return groups.astype(str).to_numpy()
