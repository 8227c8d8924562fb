"""Where each QC metric of a real file comes from: an obs column, or the counts
(docs/data.md#qc-metrics).

A file may carry some metrics in obs and not others: whole-transcriptome `UMI_count`, `ngenes`
and `pct_counts_mt`, say, when the matrix holds a gene subset, numbers that the genes it has
cannot reproduce. The metrics obs has are used as given and only the missing ones are computed,
by row block with scanpy and Scrublet; `data.qc_columns` names obs columns spelled differently.
For the thresholds generated cells are scored against, the metrics taken from obs are computed
over the matrix's genes as well (`matrix_basis`, docs/metrics.md#qc-basis), on at most
BASIS_CELLS cells drawn by the seed: thresholds are a median and a MAD, which a sample of that
size pins down, while every cell of a million-cell file would cost a Scrublet run over all of
them. That basis is fitted where it is used, not when data are loaded for training.
"""

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence

import ml_collections
import numpy as np
import pandas as pd

from cradle_jax.data.counts import CountSource
from cradle_jax.data.errors import DataError
from cradle_jax.data.qc import QC_METRICS, QCMetrics, compute_qc_metrics
from cradle_jax.data.seeding import host_rng

log = logging.getLogger(__name__)

QC_BLOCK = 20_000  # cells per QC-metric / Scrublet block (exact kNN grows ~ n^2)
# Cells the generated cells' QC basis is fitted on, at most: a median and a MAD are pinned down
# by a few thousand cells, and Scrublet's memory grows with the square of its block
# (benchmarks/README.md#backed-files).
BASIS_CELLS = 2_000
DOUBLET = "predicted_doublet"
_BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}
_EXAMPLE = "e.g. 'UMI_count=total_counts,ngenes=n_genes_by_counts'"


def parse_qc_columns(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """`data.qc_columns` as {metric: obs column}: "metric=column,metric=column" or a mapping;
    empty or None names none. DataError naming a piece that is not metric=column, an unknown
    metric, or a metric named twice."""
    if not spec:
        return {}
    if isinstance(spec, Mapping):
        pairs = [(str(metric).strip(), str(column).strip()) for metric, column in spec.items()]
    else:
        pairs = []
        for piece in str(spec).split(","):
            metric, equals, column = (part.strip() for part in piece.partition("="))
            if not (equals and metric and column):
                raise DataError(
                    f"data.qc_columns: {piece.strip()!r} is not metric=column ({_EXAMPLE})"
                )
            pairs.append((metric, column))
    unknown = [metric for metric, _ in pairs if metric not in QC_METRICS]
    if unknown:
        raise DataError(
            f"data.qc_columns names unknown QC metric(s) {', '.join(map(repr, unknown))}; "
            f"the metrics are {', '.join(QC_METRICS)}"
        )
    named = [metric for metric, _ in pairs]
    twice = sorted({metric for metric in named if named.count(metric) > 1})
    if twice:
        raise DataError(f"data.qc_columns names {', '.join(map(repr, twice))} more than once")
    return dict(pairs)


def obs_qc_columns(
    obs_columns: Iterable[str], spec: str | Mapping[str, str] | None = None
) -> dict[str, str]:
    """{metric: obs column} of each QC metric obs has, in QC_METRICS order: the column
    `data.qc_columns` names for it, else the one named as the metric. DataError naming every
    named column that obs lacks."""
    present = [str(column) for column in obs_columns]
    named = parse_qc_columns(spec)
    absent = [f"{column!r} (for {metric})" for metric, column in named.items()
              if column not in present]  # fmt: skip
    if absent:
        shown = ", ".join(map(repr, present[:8])) + (", ..." if len(present) > 8 else "")
        raise DataError(
            f"data.qc_columns names obs column(s) that obs lacks: {', '.join(absent)} "
            f"(obs columns: {shown or 'none'})"
        )
    return {
        metric: named.get(metric, metric)
        for metric in QC_METRICS
        if metric in named or metric in present
    }


def qc_metrics_from_obs(
    obs: pd.DataFrame, columns: Mapping[str, str] | None = None
) -> QCMetrics | None:
    """The QC metrics obs has, validated (numeric and finite; the doublet call boolean or 0/1
    text), from `columns` ({metric: obs column}; default: the columns named as the metrics);
    None when obs has none. Reads only those columns, one at a time (a backed file's LazyObs)."""
    columns = obs_qc_columns(obs.columns) if columns is None else dict(columns)
    if not columns:
        return None
    table = pd.DataFrame(  # one block per column: consolidating would copy the whole table
        {metric: _numeric_column(obs, column) for metric, column in columns.items()
         if metric != DOUBLET},
        index=obs.index,
        copy=False,
    )  # fmt: skip
    if DOUBLET in columns:
        table[DOUBLET] = _bool_column(obs, columns[DOUBLET])
    sources = {metric: f"obs:{column}" for metric, column in columns.items()}
    return QCMetrics(table=table, unavailable={}, source="obs", sources=sources)


def _numeric_column(obs: pd.DataFrame, name: str) -> np.ndarray:
    column = obs[name]
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        raise DataError(f"obs column {name!r} must be numeric, got dtype {column.dtype}")
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(
            f"obs column {name!r} has {bad.sum()} missing or infinite values "
            f"(first at cell {obs.index[bad][0]!r})"
        )
    return values


def _bool_column(obs: pd.DataFrame, name: str) -> np.ndarray:
    """True/False, 1/0 or their text forms; anything else (NaN included) is an error."""
    column = obs[name]
    if column.dtype == bool:
        return column.to_numpy()
    values = [_BOOL_TEXT.get(str(value).strip().lower()) for value in column.astype(object)]
    bad = [i for i, value in enumerate(values) if value is None]
    if bad:
        raise DataError(
            f"obs column {name!r} must be boolean; cell {obs.index[bad[0]]!r} has "
            f"{column.iloc[bad[0]]!r} ({len(bad)} such cells)"
        )
    return np.asarray(values, dtype=bool)


def qc_metrics_of(
    adata, counts: CountSource, config: ml_collections.ConfigDict, seed: int
) -> QCMetrics:
    """QC metrics of every cell of `adata` (an AnnData or a BackedH5ad): those obs has, as
    given; the rest computed by row block (docs/data.md#qc-metrics). The generated cells' basis
    is not part of it: `matrix_basis` fits that where it is used."""
    columns = obs_qc_columns(adata.obs.columns, config.get("qc_columns"))
    from_obs = qc_metrics_from_obs(adata.obs, columns)
    missing = [metric for metric in QC_METRICS if metric not in columns]
    if from_obs is None:
        return _warned(
            _computed(counts, adata.var_names, seed, config.qc_doublets, adata.obs_names)
        )
    if not missing:
        return from_obs
    doublets = config.qc_doublets and DOUBLET in missing
    computed = _computed(counts, adata.var_names, seed, doublets, adata.obs_names)
    log.info(
        "QC metrics from obs: %s; computed over the %d genes of the matrix: %s",
        ", ".join(f"{metric} ({source})" for metric, source in from_obs.sources.items()),
        len(adata.var_names),
        ", ".join(missing),
    )
    return _warned(_merged(from_obs, computed, missing))


def matrix_basis(
    counts: CountSource,
    var_names: Sequence[str],
    metrics: QCMetrics,
    config: ml_collections.ConfigDict,
    seed: int,
) -> QCMetrics | None:
    """Every metric over the matrix's genes for at most BASIS_CELLS cells (all of a smaller
    file), its table indexed by the cells' row positions: the basis generated cells are scored
    on when some of the real `metrics` came from obs (docs/metrics.md#qc-basis); None when every
    real metric was computed over the matrix's genes, which then are the basis.

    Scrublet over those cells costs time and memory that training does not need, so this runs
    where the basis is used (model.json, evaluation's violins, `inspect`), not at each load."""
    if metrics.source == "computed":
        return None
    n_cells = counts.shape[0]
    rows = np.arange(n_cells)
    if n_cells > BASIS_CELLS:
        rows = np.sort(host_rng(seed, "qc-basis").choice(n_cells, BASIS_CELLS, replace=False))
    basis = _computed(counts, var_names, seed, config.qc_doublets, rows=rows)
    for metric, source in metrics.criterion_sources().items():
        if source.startswith("obs:") and metric in basis.unavailable:
            log.warning(
                "QC metric %s comes from %s and cannot be computed over the matrix's genes "
                "(%s): generated cells are not judged by it",
                metric, source, basis.unavailable[metric],
            )  # fmt: skip
    return dataclasses.replace(basis, table=basis.table.set_axis(rows))


def _merged(from_obs: QCMetrics, computed: QCMetrics, missing: list[str]) -> QCMetrics:
    """The obs metrics beside the computed ones that obs lacks, rows in file order."""
    table = pd.DataFrame(index=from_obs.table.index)
    for metric in QC_METRICS:
        if metric in from_obs.table.columns:
            table[metric] = from_obs.table[metric].to_numpy()
        elif metric in missing and metric in computed.table.columns:
            table[metric] = computed.table[metric].to_numpy()
    mixed = any(metric not in from_obs.table.columns for metric in table.columns)
    return QCMetrics(
        table=table,
        unavailable={m: why for m, why in computed.unavailable.items() if m in missing},
        source="obs+computed" if mixed else "obs",
        doublet_threshold=computed.doublet_threshold if DOUBLET in missing else None,
        sources={metric: from_obs.sources.get(metric, "computed") for metric in table.columns},
    )


def _warned(metrics: QCMetrics) -> QCMetrics:
    """`metrics`, once each unavailable metric is logged (one line each, not one per block)."""
    for metric, reason in metrics.unavailable.items():
        log.warning(
            "QC metric %s unavailable: %s; it is not used as a QC criterion", metric, reason
        )
    return metrics


def _computed(
    counts: CountSource,
    var_names: Sequence[str],
    seed: int,
    doublets: bool,
    cell_names: pd.Index | None = None,
    rows: np.ndarray | None = None,
) -> QCMetrics:
    """Every QC metric computed over the matrix's genes for the cells `rows` (all by default),
    on equal row blocks of at most QC_BLOCK cells: a backed file is never loaded whole, and no
    small tail block is too small for Scrublet, which runs per block as it would per sample.
    The table is indexed by `cell_names` (default: the row positions, as text); names do not
    change the numbers."""
    rows = np.arange(counts.shape[0]) if rows is None else rows
    blocks = np.array_split(rows, -(-len(rows) // QC_BLOCK))
    block_seeds = host_rng(seed, "qc").integers(0, 2**31, size=len(blocks))
    parts = [
        compute_qc_metrics(
            counts.rows(block),
            var_names,
            block.astype(str) if cell_names is None else cell_names[block],
            seed=int(block_seed),
            doublets=doublets,
            warn=False,
        )
        for block, block_seed in zip(blocks, block_seeds, strict=True)
    ]
    unavailable = {}
    for part in parts:
        unavailable.update(part.unavailable)
    columns = [m for m in QC_METRICS if m not in unavailable]
    table = pd.concat([part.table[columns] for part in parts])
    scores = [part.doublet_threshold for part in parts if part.doublet_threshold is not None]
    return QCMetrics(
        table=table,
        unavailable=unavailable,
        source="computed",
        doublet_threshold=float(np.mean(scores)) if scores else None,
    )
