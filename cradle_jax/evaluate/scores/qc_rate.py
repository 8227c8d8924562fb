"""QC pass rate of generated, artifact-free cells under the REAL data's thresholds
(docs/metrics.md#qc-pass-rate).

A model that separates artifacts from biology should generate cells that pass the QC rules of
the data it was trained on. The metrics of generated cells come from the same recipe as real
cells (`generation.qc_metrics.generated_qc`: scanpy + Scrublet on CPU); the flags use the
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
    pass_rate,
    qc_flags,
    total_qc,
)
from cradle_jax.evaluate.generation.qc_metrics import N_CHUNKS, generated_qc

log = logging.getLogger(__name__)

UNAVAILABLE = "unavailable: "  # how `QCMetrics.criterion_sources` marks a missing metric


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
