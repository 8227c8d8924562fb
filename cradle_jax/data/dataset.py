"""Turn one AnnData (.h5ad or in memory) into `PerturbData`, the immutable input of training.

The steps follow docs/data.md: validate counts and names, read perturbation labels, QC metrics
and MAD flags, splits, counterfactual references, training-split normalisation statistics and
per-split obs-count vectors.
"""

import dataclasses
import warnings
from pathlib import Path

import anndata as ad
import h5py
import ml_collections
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cradle_jax.data import qc as qc_rules
from cradle_jax.data import qc_sources, splits
from cradle_jax.data import references as refs
from cradle_jax.data.backed_file import BackedH5ad
from cradle_jax.data.counterfactual_rows import CounterfactualRows, counterfactual_rows
from cradle_jax.data.counts import (
    BackedCounts,
    CountSource,
    InMemoryCounts,
    check_count_dtype,
    check_counts,
    check_source_counts,
)
from cradle_jax.data.errors import DataError
from cradle_jax.data.perturbations import (
    PerturbationVocabulary,
    non_assignment_labels,
    read_labels,
)
from cradle_jax.data.statistics import LogStandardizeStats, ObsCounts, log_standardize_stats
from cradle_jax.data.statistics import obs_counts as count_obs


@dataclasses.dataclass(frozen=True)
class PerturbData:
    """Everything the model needs about one dataset, host-side; counts stay sparse or on disk.

    Shapes: N cells, G genes, T single perturbations, Q QC columns, K reference samples.
    """

    counts: CountSource  # (N, G) raw counts
    gene_names: np.ndarray  # (G,)
    labels: np.ndarray  # (N,) canonical treatment labels (one string object per treatment)
    vocabulary: PerturbationVocabulary
    dosage: sp.csr_matrix  # (N, T) float32
    qc_metrics: qc_rules.QCMetrics  # rows by position, continuous metrics in float32
    qc_thresholds: qc_rules.QCThresholds
    qc_columns: tuple[str, ...]  # names of the Q columns of `qc`
    qc: np.ndarray  # (N, Q) float32, 1 = QC fail
    split: np.ndarray  # (N,) int8 split codes
    references: refs.ReferencePools  # each cell's reference draws (K), made on demand
    counterfactual: CounterfactualRows  # x^cf rows, the lower medians of those draws
    library_size: np.ndarray  # (N,) float32, sum of the modelled genes
    normalization: LogStandardizeStats
    obs_counts: dict[str, ObsCounts]  # per split name

    @property
    def n_cells(self) -> int:
        return len(self.split)

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
            "qc_sources": self.qc_metrics.criterion_sources(),
            "qc_unavailable": dict(self.qc_metrics.unavailable),
            "qc_columns": list(self.qc_columns),
            "qc_fail_fraction": float(fail.mean()),
            "split_cells": {name: len(self.cells(name)) for name in splits.SPLIT_CODES},
            "unused_cells": int((self.split == splits.UNUSED).sum()),
            "cells_without_reference": self.references.n_without_reference,
            "non_assignment_labels": non_assignment_labels(self.vocabulary.singles),
        }


def read_h5ad(path: str | Path) -> ad.AnnData:
    """Read an .h5ad into memory with errors that name the file and the problem."""
    path = Path(path)
    _check_path(path)
    _check_anndata_layout(path)
    try:
        with warnings.catch_warnings():
            # Duplicate names get our own one-line error (`_check_names`), not anndata's warning.
            warnings.filterwarnings("ignore", message=".*names are not unique")
            return ad.read_h5ad(path)
    except Exception as err:  # anndata raises many types for damaged files
        raise DataError(
            f"{path} could not be read as AnnData (the file may be damaged): {err}".splitlines()[0]
        ) from err


def _check_anndata_layout(path: Path) -> None:
    """An HDF5 file that anndata did not write is named as such, before anndata trips on it."""
    try:
        with h5py.File(path, "r") as file:
            encoding = file.attrs.get("encoding-type")
            keys = set(file.keys())
    except Exception as err:  # h5py raises OSError and others for a damaged header
        raise DataError(f"{path} is damaged: HDF5 cannot open it ({err})".splitlines()[0]) from err
    if isinstance(encoding, bytes):
        encoding = encoding.decode()
    if encoding != "anndata" and not {"obs", "var"} <= keys:
        groups = ", ".join(sorted(keys)[:5]) or "none"
        raise DataError(
            f"{path} is an HDF5 file but not AnnData (.h5ad): it has no obs/var "
            f"(top-level groups: {groups})"
        )


def _check_path(path: Path) -> None:
    if path.is_dir():
        raise DataError(f"{path} is a directory, not an .h5ad file")
    if not path.is_file():
        raise DataError(f"input file {path} does not exist")
    if not h5py.is_hdf5(path):
        raise DataError(f"{path} is not an HDF5 (.h5ad) file")


def load_perturb_data(
    source: str | Path | ad.AnnData, config: ml_collections.ConfigDict, seed: int
) -> PerturbData:
    """Build PerturbData from a path or an AnnData with the `data` config section.

    A path with `data.backed` keeps the counts on disk and reads obs one column at a time
    (`BackedH5ad`), so memory does not follow the size of the obs table either.
    """
    if isinstance(source, str | Path) and config.backed:
        _check_path(Path(source))
        _check_anndata_layout(Path(source))
        with BackedH5ad(source) as file:
            _check_layer(config.layer, file.layers, backed=True)
            return _load(file, file.counts(), file.obs.duplicated_names(), config, seed)
    adata = read_h5ad(source) if isinstance(source, str | Path) else source
    counts = count_source(adata, config.layer)
    names = pd.Index(adata.obs_names)
    return _load(adata, counts, names[names.duplicated()], config, seed)


def _load(
    adata: ad.AnnData | BackedH5ad,
    counts: CountSource,
    duplicated_cells: pd.Index,
    config: ml_collections.ConfigDict,
    seed: int,
) -> PerturbData:
    where = f"counts ({'layer ' + repr(config.layer) if config.layer else 'X'})"
    _check_names(duplicated_cells, adata.var_names)
    library = check_counts(counts, where)
    if not library.any():
        raise DataError(f"{where} are all zero: no cell has a single count")

    labels, vocab = read_labels(
        adata.obs, config.perturbation_key, config.separator, config.control_label
    )
    treatments, treatment_of_cell = np.unique(labels, return_inverse=True)
    dosage = vocab.dosage(treatments.tolist())[treatment_of_cell]
    metrics = qc_sources.qc_metrics_of(adata, counts, config, seed)
    thresholds = qc_rules.fit_thresholds(metrics)
    flags = qc_rules.qc_flags(metrics.table, thresholds, config.qc_threshold)
    qc_matrix, qc_columns = qc_matrix_of(flags, config.qc_mode)
    fail = qc_rules.total_qc(flags).astype(bool)
    del flags
    metrics = _compact(metrics)

    split_seed = seed if config.split_seed < 0 else config.split_seed
    split = _split(adata.obs, labels, dosage, config, split_seed)
    _check_split(split, labels, vocab, dosage)
    groups = _reference_groups(adata.obs, labels, config.reference_group_key)
    references = refs.reference_pools(
        groups, fail, split, config.references, seed, config.n_reference_samples
    )
    train = np.flatnonzero(split == splits.TRAIN)
    return PerturbData(
        counts=counts,
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
        counterfactual=counterfactual_rows(references, counts),
        library_size=library.astype(np.float32),
        normalization=log_standardize_stats(counts, train),
        obs_counts={
            name: count_obs(dosage, qc_matrix, np.flatnonzero(split == code))
            for name, code in splits.SPLIT_CODES.items()
        },
    )


def with_generated_basis(
    data: PerturbData, config: ml_collections.ConfigDict, seed: int
) -> PerturbData:
    """`data` with the generated cells' QC basis (docs/metrics.md#qc-basis): the thresholds in
    `qc_thresholds.generated_basis` and the metrics in `qc_metrics.matrix`, when some real metric
    came from obs (`data` unchanged otherwise). `config` is the `data` section it was loaded
    with, `seed` the load's. Called where the basis is used (when model.json is written, in
    evaluation and in `inspect`): Scrublet over its cells is work that loading for training does
    not need. The real cells' metrics, thresholds and flags stay as they are."""
    basis = qc_sources.matrix_basis(data.counts, data.gene_names, data.qc_metrics, config, seed)
    if basis is None:
        return data
    thresholds = dataclasses.replace(
        data.qc_thresholds, generated_basis=qc_rules.fit_thresholds(basis)
    )
    metrics = dataclasses.replace(data.qc_metrics, matrix=_compact(basis, basis.table.index))
    return dataclasses.replace(data, qc_thresholds=thresholds, qc_metrics=metrics)


def _compact(metrics: qc_rules.QCMetrics, index: pd.Index | None = None) -> qc_rules.QCMetrics:
    """The metrics as kept after the flags (or the basis thresholds) are made, for plots and
    `inspect`: rows by position (or `index`: the positions of the cells the generated cells'
    basis was computed for), continuous columns in float32. A name index would keep every cell
    name alive, and float64 would double the largest table. Empties `metrics.table`."""
    table = pd.DataFrame(index=pd.RangeIndex(len(metrics.table)) if index is None else index)
    for column in metrics.table.columns:  # one column at a time: no second copy of the table
        values = metrics.table.pop(column).to_numpy()
        table[column] = values.astype(np.float32) if values.dtype == np.float64 else values
    return dataclasses.replace(metrics, table=table)


def count_source(adata: ad.AnnData, layer: str) -> CountSource:
    _check_layer(layer, adata.layers, backed=adata.isbacked)
    if adata.isbacked:
        return BackedCounts(adata.filename, "X")
    matrix = adata.layers[layer] if layer else adata.X
    if matrix is None:
        raise DataError("the AnnData has no X matrix; set data.layer to the counts layer")
    check_count_dtype(matrix.dtype)
    check_source_counts(matrix, f"counts ({'layer ' + repr(layer) if layer else 'X'})")
    return InMemoryCounts(sp.csr_matrix(matrix, dtype=np.float32))


def _check_layer(layer: str, layers, backed: bool) -> None:
    if layer and layer not in layers:
        raise DataError(
            f"layer {layer!r} not found (layers: {', '.join(layers) or 'none'}); "
            "set data.layer to the layer holding raw counts, or '' for X"
        )
    if layer and backed:
        raise DataError("backed reading takes counts from X; move the counts layer to X")


def _check_names(duplicated_cells: pd.Index, gene_names: pd.Index) -> None:
    for what, duplicated, fix in (
        ("cell", duplicated_cells, "obs_names_make_unique"),
        ("gene", gene_names[gene_names.duplicated()], "var_names_make_unique"),
    ):
        if len(duplicated):
            extra = duplicated.value_counts(sort=True)  # occurrences beyond the first
            shown = ", ".join(f"{name!r} ×{n + 1}" for name, n in extra[:3].items())
            raise DataError(
                f"duplicate {what} names: {len(extra)} names occur more than once "
                f"(e.g. {shown}); call adata.{fix}()"
            )


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
