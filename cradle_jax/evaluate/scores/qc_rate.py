"""QC pass rate of generated, artifact-free cells under the REAL data's thresholds
(docs/metrics.md#qc-pass-rate).

A model that separates artifacts from biology should generate cells that pass the QC rules of
the data it was trained on. The metrics of generated cells come from the same recipe as real
cells (`cradle_jax.data.qc.compute_qc_metrics`: scanpy + Scrublet on CPU); the flags use the
thresholds fitted on all real cells, never thresholds refitted on the generated cells, which
would pass a fixed fraction of any cell set by construction. Where a real metric came from obs
(over genes the model does not have), its threshold is fitted on the real cells' same metric
over the model's genes, so both sides are measured alike (docs/metrics.md#qc-basis). Pass rates
count passing cells explicitly (docs/decisions.md#qc-pass-rate-counted): all-pass gives 1.0,
and a majority of fails is never reported as the pass rate.
"""

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cradle_jax.data.errors import DataError
from cradle_jax.data.qc import (
    QC_METRICS,
    QC_MULTIPLIERS,
    QCMetrics,
    QCThresholds,
    compute_qc_metrics,
    pass_rate,
    qc_flags,
    total_qc,
)

log = logging.getLogger(__name__)

UNAVAILABLE = "unavailable: "  # how `QCMetrics.criterion_sources` marks a missing metric
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


def generated_cell_names(labels: np.ndarray) -> list[str]:
    """'<label>_<p>' with p the within-perturbation position: unique, as p has no '_'."""
    labels = np.asarray(labels)
    position = pd.Series(labels).groupby(labels, sort=False).cumcount().to_numpy()
    return [f"{label}_{p}" for label, p in zip(labels.tolist(), position.tolist(), strict=True)]


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
    names = generated_cell_names(labels) if cell_names is None else [str(n) for n in cell_names]
    if len(names) != len(labels):
        raise DataError(f"{len(labels)} generated cells but {len(names)} cell names")
    if not pd.Index(names).is_unique:
        raise DataError("generated cell names must be unique")
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
    unavailable = {}
    for metric, chunk_reasons in missing.items():
        k, reason = chunk_reasons[0]
        if len(chunk_reasons) < len(tables):
            reason = f"{reason} (chunk {k}; {len(chunk_reasons)} of {len(tables)} chunks)"
        log.warning("QC metric %s dropped for all generated cells: %s", metric, reason)
        unavailable[metric] = reason
    combined = pd.concat(tables, axis=0, join="outer")
    # A metric some chunk lacks (the doublet call of a small chunk) is dropped for every cell.
    columns = [m for m in QC_METRICS if m in combined.columns and m not in unavailable]
    order = np.concatenate(rows)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    table = combined[columns].iloc[inverse]
    return QCMetrics(table=table, unavailable=unavailable, source="computed")


def qc_pass_rates(
    metrics: QCMetrics | pd.DataFrame,
    labels: np.ndarray,
    thresholds: QCThresholds,
    ts: Sequence[float] = QC_MULTIPLIERS,
) -> dict:
    """Overall and per-perturbation QC pass rates of generated cells at each multiplier t.

    `thresholds` must be those fitted on the real data (docs/metrics.md#qc-pass-rate). Returns
    {"qc_pass_rate_t3": float, …, "per_perturbation": {"t3": {label: float, …}, …},
    "fail_share": {"t3": {criterion: float, …}, …}, "criteria": [flag columns used]},
    perturbations in order of first appearance; a criterion is used when the generated table
    has its metric and (doublets aside) the real data a threshold for it. `fail_share` is the
    share of cells failing each criterion (a cell may fail several): what a pass rate is made of.
    """
    table = metrics.table if isinstance(metrics, QCMetrics) else metrics
    labels = np.asarray(labels).astype(str)
    if len(table) == 0:
        raise DataError("no generated cells to compute a QC pass rate on")
    if labels.shape != (len(table),):
        raise DataError(f"{len(table)} cells in the QC table but labels of shape {labels.shape}")
    result: dict = {"per_perturbation": {}, "fail_share": {}}
    criteria: list[str] = []
    for t in ts:
        flags = qc_flags(table, thresholds, t)
        criteria = list(flags.columns)
        key = f"t{t:g}"
        result[f"qc_pass_rate_{key}"] = pass_rate(flags)
        passed = pd.Series(total_qc(flags) == 0, dtype=np.float64)
        per_label = passed.groupby(labels, sort=False).mean()
        result["per_perturbation"][key] = {
            str(label): float(rate) for label, rate in per_label.items()
        }
        result["fail_share"][key] = {str(name): float(flags[name].mean()) for name in criteria}
    if not criteria:
        log.warning("no QC criterion applies to the generated cells: every cell passes")
    result["criteria"] = criteria
    return result


def score_generated_cells(
    counts: sp.csr_matrix | np.ndarray,
    labels: np.ndarray,
    gene_names: Sequence[str],
    thresholds: QCThresholds,
    *,
    seed: int,
    n_chunks: int = N_CHUNKS,
    doublets: bool = True,
    ts: Sequence[float] = QC_MULTIPLIERS,
) -> tuple[QCMetrics, dict]:
    """`generated_qc` then `qc_pass_rates` against the real data's `thresholds` on the genes
    generated cells have (`QCThresholds.for_generated_cells`, docs/metrics.md#qc-basis):
    (metrics, rates); rates["basis"] says how each criterion was judged and
    rates["real_sources"] where the real cells' values came from."""
    basis = thresholds.for_generated_cells()
    metrics = generated_qc(
        counts, labels, gene_names, seed=seed, n_chunks=n_chunks, doublets=doublets,
        doublet_threshold=basis.doublet_score,
    )  # fmt: skip
    rates = qc_pass_rates(metrics, labels, basis, ts)
    rates["basis"] = generated_criteria(thresholds)
    rates["real_sources"] = dict(thresholds.sources)
    return metrics, rates


def generated_criteria(thresholds: QCThresholds) -> dict[str, str]:
    """How generated cells are judged on each QC metric (docs/metrics.md#qc-basis): by "the
    real thresholds", by "thresholds refitted over the model's genes" (the real values came
    from obs), or "not judged: <reason>"; metrics in the order of `thresholds.sources`."""
    basis = thresholds.for_generated_cells()
    sources = thresholds.sources or {
        metric: "source not recorded" for metric in QC_METRICS if _judged(thresholds, metric)
    }
    result = {}
    for metric, source in sources.items():
        if source.startswith(UNAVAILABLE):
            result[metric] = f"not judged: {source.removeprefix(UNAVAILABLE)}"
        elif _judged(basis, metric):
            refitted = basis is not thresholds and source.startswith("obs:")
            result[metric] = (
                "thresholds refitted over the model's genes" if refitted else "the real thresholds"
            )
        else:
            result[metric] = f"not judged: {_why_not(basis, metric)}"
    return result


def _judged(thresholds: QCThresholds, metric: str) -> bool:
    """Whether cells scored against `thresholds` are judged by `metric` (as `qc_flags` does)."""
    if metric == "predicted_doublet":
        return thresholds.doublets
    return metric in thresholds.medians


def _why_not(basis: QCThresholds, metric: str) -> str:
    where = basis.sources.get(metric, "")
    if where.startswith(UNAVAILABLE):
        return f"cannot be computed over the model's genes ({where.removeprefix(UNAVAILABLE)})"
    if metric == "predicted_doublet":
        return "the real cells' doublet call flags no cell"
    return "no threshold fitted on the real cells"
