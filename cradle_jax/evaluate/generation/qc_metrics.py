"""QC metrics of generated cells, computed with the recipe of the real cells
(`cradle_jax.data.qc.compute_qc_metrics`: scanpy + Scrublet on CPU) in chunks that each mix
every perturbation, as the original's protocol does (docs/metrics.md#qc-pass-rate).

Judging them against the real data's thresholds is `scores.qc_rate`'s job.
"""

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cradle_jax.data.errors import DataError
from cradle_jax.data.qc import QC_METRICS, QCMetrics, compute_qc_metrics
from cradle_jax.evaluate.generation.names import generated_cell_names

log = logging.getLogger(__name__)

N_CHUNKS = 10  # Scrublet runs on tenths of the generated set (docs/metrics.md#qc-pass-rate)


def chunk_assignment(labels: np.ndarray, n_chunks: int = N_CHUNKS) -> np.ndarray:
    """Chunk index (N,) int64 of each generated cell, as the original's protocol splits them.

    A perturbation's cells, taken in their order in `labels`, are cut into `n_chunks`
    consecutive runs: the cell at within-perturbation position p of n gets chunk
    floor(p·n_chunks / n). With 100 cells per perturbation and 10 chunks, chunk k holds
    positions 10k…10k+9 of every perturbation (the original's split); with fewer cells than
    chunks some chunks get none of that perturbation's cells.
    """
    if n_chunks < 1:
        raise DataError(f"n_chunks must be at least 1, got {n_chunks}")
    groups = pd.Series(np.asarray(labels)).groupby(np.asarray(labels), sort=False)
    position = groups.cumcount().to_numpy(np.int64)
    size = groups.transform("size").to_numpy(np.int64)
    return position * n_chunks // size


def _validated(
    counts: sp.csr_matrix | np.ndarray, labels: np.ndarray, gene_names: Sequence[str]
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Counts as CSR (N, G) and labels as a str (N,) array, or DataError naming the problem."""
    if sp.issparse(counts):
        matrix = sp.csr_matrix(counts)
    else:
        dense = np.asarray(counts)
        if dense.ndim != 2:
            raise DataError(
                f"generated counts must be a 2-D (cells, genes) matrix, got shape {dense.shape}"
            )
        matrix = sp.csr_matrix(dense)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"labels must be 1-D (one per generated cell), got shape {labels.shape}")
    n_cells, n_genes = matrix.shape
    if n_cells == 0:
        raise DataError("no generated cells to score for QC")
    if len(labels) != n_cells:
        raise DataError(f"{n_cells} generated cells but {len(labels)} labels")
    if len(gene_names) != n_genes:
        raise DataError(f"generated counts have {n_genes} genes but {len(gene_names)} gene names")
    for problem, bad in (
        ("NaN or infinite", ~np.isfinite(matrix.data)),
        ("negative", matrix.data < 0),
    ):
        if bad.any():
            row = int(np.searchsorted(matrix.indptr, np.flatnonzero(bad)[0], side="right") - 1)
            raise DataError(
                f"generated counts have {problem} values (first at cell {row}, "
                f"label {str(labels[row])!r})"
            )
    return matrix, labels.astype(str)


def _chunk_seed(seed: int, chunk: int) -> int:
    """A 32-bit Scrublet seed (sklearn's limit) that depends on (seed, chunk) only."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0])


def generated_qc(
    counts: sp.csr_matrix | np.ndarray,
    labels: np.ndarray,
    gene_names: Sequence[str],
    *,
    seed: int,
    n_chunks: int = N_CHUNKS,
    doublets: bool = True,
    cell_names: Sequence[str] | None = None,
    doublet_threshold: float | None = None,
) -> QCMetrics:
    """QC metrics of generated cells (N, G), computed chunk by chunk, in the input cell order.

    Chunks follow `chunk_assignment` (docs/metrics.md#qc-pass-rate) so that Scrublet sees a
    mixture of every perturbation, as in the original; chunk k's Scrublet is seeded from
    (seed, k). Counts stay sparse. Scrublet calls a doublet above `doublet_threshold`, the real
    data's (`QCThresholds.doublet_score`), when given. Returns a QCMetrics whose table (N, ≤6) is
    indexed by `cell_names` (default `generated_cell_names(labels)`). A metric unavailable in
    any chunk (no matching genes, or a chunk too small for Scrublet) is dropped for every cell
    and listed in `unavailable`, so all cells are judged by the same criteria.
    """
    matrix, labels = _validated(counts, labels, gene_names)
    names = _cell_names(labels, cell_names)
    chunk = chunk_assignment(labels, n_chunks)
    tables, rows, missing = [], [], {}
    for k in range(n_chunks):
        index = np.flatnonzero(chunk == k)
        if index.size == 0:
            continue
        metrics = compute_qc_metrics(
            matrix[index],
            gene_names,
            [names[i] for i in index],
            seed=_chunk_seed(seed, k),
            doublets=doublets,
            warn=False,
            doublet_threshold=doublet_threshold,
        )
        for metric, reason in metrics.unavailable.items():
            missing.setdefault(metric, []).append((k, reason))
        tables.append(metrics.table)
        rows.append(index)
    unavailable = _dropped(missing, len(tables))
    combined = pd.concat(tables, axis=0, join="outer")
    # A metric some chunk lacks (the doublet call of a small chunk) is dropped for every cell.
    columns = [m for m in QC_METRICS if m in combined.columns and m not in unavailable]
    order = np.concatenate(rows)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    table = combined[columns].iloc[inverse]
    return QCMetrics(table=table, unavailable=unavailable, source="computed")


def _cell_names(labels: np.ndarray, cell_names: Sequence[str] | None) -> list[str]:
    """`cell_names` as str, or `generated_cell_names(labels)`; DataError unless one per cell
    and unique."""
    names = generated_cell_names(labels) if cell_names is None else [str(n) for n in cell_names]
    if len(names) != len(labels):
        raise DataError(f"{len(labels)} generated cells but {len(names)} cell names")
    if not pd.Index(names).is_unique:
        raise DataError("generated cell names must be unique")
    return names


def _dropped(missing: dict[str, list[tuple[int, str]]], n_chunks: int) -> dict[str, str]:
    """The reason each metric some chunk could not compute is dropped for every cell (naming
    the first such chunk when not all of the `n_chunks` lacked it), each logged once."""
    unavailable = {}
    for metric, chunk_reasons in missing.items():
        k, reason = chunk_reasons[0]
        if len(chunk_reasons) < n_chunks:
            reason = f"{reason} (chunk {k}; {len(chunk_reasons)} of {n_chunks} chunks)"
        log.warning("QC metric %s dropped for all generated cells: %s", metric, reason)
        unavailable[metric] = reason
    return unavailable
