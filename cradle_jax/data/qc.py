"""QC metrics and MAD-rule flags (docs/data.md#qc-metrics, docs/data.md#qc-rules).

Metrics come from obs where a file ships them (`data/qc_sources.py`), otherwise from scanpy's
`calculate_qc_metrics` and Scrublet. Thresholds are fitted once on all real cells and reused
unchanged to score generated cells, on the genes those cells have (docs/metrics.md#qc-basis).
Sign convention: a flag of 1/True means the cell FAILED that criterion.
"""

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cradle_jax.data.errors import DataError

if TYPE_CHECKING:  # scanpy/anndata are imported lazily: `import cradle_jax.data.qc` stays cheap
    import anndata as ad

log = logging.getLogger(__name__)

QC_METRICS: tuple[str, ...] = (
    "UMI_count",
    "ngenes",
    "pct_counts_mt",
    "pct_counts_ribo",
    "pct_counts_hb",
    "predicted_doublet",
)
QC_MULTIPLIERS: tuple[int, ...] = (3, 4, 5)

# The original's patterns, case-sensitive. "^HB[^(P)]" is a character class: HBEGF matches,
# HBP1 does not.
GENE_PATTERNS: dict[str, str] = {"mt": r"^MT-", "ribo": r"^RP[SL]", "hb": r"^HB[^(P)]"}
_CONTINUOUS = QC_METRICS[:-1]
FAIL_BELOW = frozenset({"UMI_count", "ngenes"})  # the others fail above their threshold
# Scrublet's 30 principal components and kNN doublet scores are meaningless on a handful of
# cells (on 40 homogeneous cells it calls every one a doublet), so fewer cells get no doublet call.
MIN_SCRUBLET_CELLS = 100


def gene_pattern_masks(var_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Boolean (G,) masks of mitochondrial, ribosomal and haemoglobin genes by symbol."""
    names = pd.Index(var_names).astype(str)
    return {
        name: np.asarray(names.str.contains(pattern, regex=True), dtype=bool)
        for name, pattern in GENE_PATTERNS.items()
    }


@dataclass(frozen=True)
class QCMetrics:
    """Per-cell QC metrics: the available columns of QC_METRICS, in that order.

    `predicted_doublet` is bool, the others float64; `unavailable` maps each metric that could
    not be computed to a one-line reason. `source` says where the metrics came from as a whole
    ("obs", "computed" or "obs+computed"), `sources` per metric ("obs:<column>" or "computed";
    a metric it does not name takes `source`'s). `doublet_threshold` is the Scrublet
    doublet-score threshold the call used (the mean over row blocks), None where the call came
    from obs or Scrublet set none. `matrix` holds, once fitted where it is used
    (`qc_sources.matrix_basis`) and when some metric came from obs, the same cells' metrics
    computed over the matrix's genes: the basis generated cells are scored on
    (docs/metrics.md#qc-basis).
    """

    table: pd.DataFrame
    unavailable: dict[str, str]
    source: str
    doublet_threshold: float | None = None
    sources: dict[str, str] = field(default_factory=dict)
    matrix: "QCMetrics | None" = None

    def criterion_sources(self) -> dict[str, str]:
        """Where each metric came from: "obs:<column>", "computed" or "unavailable: <reason>"."""
        result = {}
        for metric in QC_METRICS:
            if metric in self.table.columns:
                default = f"obs:{metric}" if self.source == "obs" else "computed"
                result[metric] = self.sources.get(metric, default)
            elif metric in self.unavailable:
                result[metric] = f"unavailable: {self.unavailable[metric]}"
        return result


def compute_qc_metrics(
    counts: sp.csr_matrix,
    var_names: Sequence[str],
    cell_names: Sequence[str],
    *,
    seed: int,
    doublets: bool = True,
    warn: bool = True,
    doublet_threshold: float | None = None,
) -> QCMetrics:
    """QC metrics of a row block of raw counts with scanpy (docs/data.md#qc-metrics),
    deterministic in seed.

    Scrublet calls a doublet above `doublet_threshold` when one is given (a threshold fitted on
    other cells: docs/decisions.md#doublet-threshold-of-real-cells), else above the threshold it
    fits on this block. The block stays sparse. A percentage whose gene pattern matches no gene,
    and the doublet call when Scrublet cannot run or is switched off, are left out and listed in
    `unavailable` with a logged warning (unless `warn` is off: a caller scoring many blocks warns
    once itself), so a missing criterion is never silently treated as "pass".
    """
    masks = gene_pattern_masks(var_names)
    unavailable = {
        f"pct_counts_{name}": f"no gene matches {GENE_PATTERNS[name]}"
        for name, mask in masks.items()
        if not mask.any()
    }
    adata, table = _scanpy_metrics(counts, var_names, cell_names, masks)
    doublet_reason, threshold = _doublet_call(adata, table, seed, doublets, doublet_threshold)
    if doublet_reason is not None:
        unavailable["predicted_doublet"] = doublet_reason
    for metric, reason in unavailable.items() if warn else ():
        log.warning(
            "QC metric %s unavailable: %s; it is not used as a QC criterion", metric, reason
        )
    columns = [metric for metric in QC_METRICS if metric in table.columns]
    return QCMetrics(table[columns], unavailable, "computed", doublet_threshold=threshold)


def _scanpy_metrics(
    counts: sp.csr_matrix,
    var_names: Sequence[str],
    cell_names: Sequence[str],
    masks: dict[str, np.ndarray],
) -> tuple["ad.AnnData", pd.DataFrame]:
    """The block as a sparse AnnData, and its UMI count, gene count and the percentage of each
    gene pattern that matches some gene, by scanpy (cells × metrics, float64)."""
    import anndata as ad
    import scanpy as sc

    qc_vars = [name for name, mask in masks.items() if mask.any()]
    var = pd.DataFrame(
        {name: masks[name] for name in qc_vars}, index=pd.Index(var_names).astype(str)
    )
    adata = ad.AnnData(
        X=sp.csr_matrix(counts), obs=pd.DataFrame(index=pd.Index(cell_names).astype(str)), var=var
    )
    scanpy_metrics, _ = sc.pp.calculate_qc_metrics(
        adata, qc_vars=qc_vars, percent_top=None, log1p=False, inplace=False
    )
    table = pd.DataFrame(index=adata.obs_names)
    table["UMI_count"] = scanpy_metrics["total_counts"].to_numpy(np.float64)
    table["ngenes"] = scanpy_metrics["n_genes_by_counts"].to_numpy(np.float64)
    for name in qc_vars:
        # A cell without counts has no share of anything: 0, not scanpy's 0/0 = NaN.
        pct = scanpy_metrics[f"pct_counts_{name}"].to_numpy(np.float64)
        table[f"pct_counts_{name}"] = np.nan_to_num(pct, nan=0.0)
    return adata, table


def _doublet_call(
    adata: "ad.AnnData",
    table: pd.DataFrame,
    seed: int,
    doublets: bool,
    doublet_threshold: float | None,
) -> tuple[str | None, float | None]:
    """Scrublet's call added to `table` as `predicted_doublet`: (None, the score threshold it
    used) when it ran, else (why it did not, None)."""
    if not doublets:
        return "doublet calling switched off", None
    reason = _run_scrublet(adata, seed, doublet_threshold)
    if reason is not None:
        return reason, None
    table["predicted_doublet"] = adata.obs["predicted_doublet"].to_numpy(dtype=bool)
    threshold = adata.uns.get("scrublet", {}).get("threshold")
    return None, None if threshold is None else float(threshold)


def _run_scrublet(adata: "ad.AnnData", seed: int, threshold: float | None) -> str | None:
    """Adds obs["predicted_doublet"] to `adata` (scores above `threshold`, or above the one
    Scrublet fits when None); returns why not when Scrublet cannot run."""
    import scanpy as sc

    if adata.n_obs < MIN_SCRUBLET_CELLS:
        return f"Scrublet needs at least {MIN_SCRUBLET_CELLS} cells, got {adata.n_obs}"
    try:
        # Exact kNN: on 2 cores it is faster than pynndescent's approximate search for the
        # block sizes the data layer uses (benchmarks/README.md#scrublet), and deterministic.
        with warnings.catch_warnings():
            # numpy's "mean of empty slice" and the like on degenerate input (one gene): the
            # outcome is reported as the criterion's one line, not as warnings before it.
            warnings.simplefilter("ignore", RuntimeWarning)
            sc.pp.scrublet(
                adata, random_state=seed, use_approx_neighbors=False, threshold=threshold
            )
    except Exception as error:  # scanpy/sklearn/skimage failures all mean "no doublet call"
        return f"Scrublet failed: {type(error).__name__}: {error}".replace("\n", " ").rstrip(".")
    if "threshold" not in adata.uns.get("scrublet", {}):
        # scanpy then calls no cell a doublet: that is "no call", not "no doublets".
        return "Scrublet found no doublet-score threshold (simulated doublet scores not bimodal)"
    return None


@dataclass(frozen=True)
class QCThresholds:
    """Median and raw MAD (no 1.4826 factor, as the original; docs/data.md#qc-rules) of each
    continuous metric over all cells.

    `doublets` says whether the doublet call could be fitted on the real data (Scrublet ran,
    found a threshold and called at least one cell): generated cells scored against these
    thresholds are judged by it only then, so both sides use the same criteria. A call
    that flags no real cell carries no information about the real data, while Scrublet run
    on a generated set calls its own share of doublets whatever the cells (1.8 % of real
    artifact-free cells in chunks of 510), which alone would make generated cells fail more.
    `doublet_score` is the Scrublet score threshold of the real call, which generated cells are
    called by too (None where the call came from obs; `generated_basis` then holds Scrublet's
    threshold over the matrix's genes, or, in files written before it, generated cells get
    Scrublet's own). `sources` records where each real metric came from
    (`QCMetrics.criterion_sources`).
    `generated_basis`, when some real metric came from obs, holds the thresholds fitted on the
    real cells' metrics computed over the matrix's genes, which generated cells are scored
    against instead (docs/metrics.md#qc-basis); it is fitted where it is used (model.json,
    evaluation, `inspect`), so data loaded for training carry None.
    """

    medians: dict[str, float]
    mads: dict[str, float]
    doublets: bool = True
    doublet_score: float | None = None
    sources: dict[str, str] = field(default_factory=dict)
    generated_basis: "QCThresholds | None" = None

    def for_generated_cells(self) -> "QCThresholds":
        """The thresholds generated cells are scored against: on the genes they have
        (docs/decisions.md#qc-basis-of-generated-cells)."""
        return self if self.generated_basis is None else self.generated_basis

    def threshold(self, metric: str, t: float) -> float:
        """med − t·MAD for UMI_count/ngenes (fail below), med + t·MAD for pct_* (fail above)."""
        if metric not in self.medians:
            raise DataError(f"no QC threshold for {metric!r} (fitted: {', '.join(self.medians)})")
        sign = -1.0 if metric in FAIL_BELOW else 1.0
        return self.medians[metric] + sign * t * self.mads[metric]

    def to_dict(self) -> dict:
        """JSON-serialisable; also lists the thresholds at each t in QC_MULTIPLIERS for reports."""
        return {
            "medians": dict(self.medians),
            "mads": dict(self.mads),
            "doublets": self.doublets,
            "doublet_score": self.doublet_score,
            "thresholds": {
                str(t): {metric: self.threshold(metric, t) for metric in self.medians}
                for t in QC_MULTIPLIERS
            },
            "sources": dict(self.sources),
            "generated_basis": (
                None if self.generated_basis is None else self.generated_basis.to_dict()
            ),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Self:
        """Inverse of to_dict (the derived thresholds are recomputed, not read).

        Files written before `doublets` was recorded always scored the doublet call: True;
        before `doublet_score` was, generated cells got Scrublet's own threshold: None; before
        `sources` and `generated_basis` were, the sources are unknown ({}) and generated cells
        are scored against the real thresholds (None).
        """
        if set(d["medians"]) != set(d["mads"]):
            raise DataError("QC thresholds: 'medians' and 'mads' name different metrics")
        basis = d.get("generated_basis")
        return cls(
            medians={k: float(v) for k, v in d["medians"].items()},
            mads={k: float(v) for k, v in d["mads"].items()},
            doublets=bool(d.get("doublets", True)),
            doublet_score=None if d.get("doublet_score") is None else float(d["doublet_score"]),
            sources={str(k): str(v) for k, v in d.get("sources", {}).items()},
            generated_basis=None if basis is None else cls.from_dict(basis),
        )


def fit_thresholds(metrics: QCMetrics) -> QCThresholds:
    """Median and MAD of every available continuous metric over all cells of the table, with
    each metric's source; when `metrics.matrix` is there, the same fitted on it as the
    generated cells' basis (docs/metrics.md#qc-basis).

    A real doublet call that flags no cell is reported only where generated cells are judged by
    these thresholds: when every metric was computed over the matrix's genes. Otherwise they are
    judged on the matrix basis, whose own fit reports its call."""
    basis = None if metrics.matrix is None else fit_thresholds(metrics.matrix)
    thresholds = _fitted(metrics, warn_doublets=basis is None and metrics.source == "computed")
    return replace(thresholds, sources=metrics.criterion_sources(), generated_basis=basis)


def _fitted(metrics: QCMetrics, warn_doublets: bool) -> QCThresholds:
    if len(metrics.table) == 0:
        raise DataError("no cells to fit QC thresholds on")
    medians, mads = {}, {}
    for metric in _CONTINUOUS:
        if metric in metrics.table.columns:
            values = metrics.table[metric].to_numpy(np.float64)
            medians[metric] = float(np.median(values))
            mads[metric] = float(np.median(np.abs(values - medians[metric])))
    table = metrics.table
    doublets = "predicted_doublet" in table.columns and bool(table["predicted_doublet"].any())
    if "predicted_doublet" in table.columns and not doublets and warn_doublets:
        log.warning(
            "Scrublet called no cell a doublet: the doublet call is not used as a QC criterion "
            "for cells scored against these data (generated cells)"
        )
    return QCThresholds(
        medians=medians, mads=mads, doublets=doublets, doublet_score=metrics.doublet_threshold
    )


def qc_flags(
    metrics: pd.DataFrame, thresholds: QCThresholds, t: float, doublets: bool | None = None
) -> pd.DataFrame:
    """Bool (N, ≤6) "qc_<metric>" columns in QC_METRICS order, True = failed
    (docs/data.md#qc-rules).

    A criterion needs its metric in `metrics` and, unless it is the doublet call, a fitted
    threshold; the thresholds may come from other cells (real data scoring generated cells,
    docs/metrics.md#qc-pass-rate). The doublet call counts when the thresholds' data had one
    (`QCThresholds.doublets`), or as `doublets` says: True for real cells of another file, which
    bring their own call. Inequalities are strict, so a value equal to its threshold passes.
    """
    if not t >= 0:
        raise DataError(f"the QC threshold multiplier t (data.qc_threshold) must be >= 0, got {t}")
    flags = {}
    for metric in QC_METRICS:
        if metric not in metrics.columns:
            continue
        if metric == "predicted_doublet":
            if not (thresholds.doublets if doublets is None else doublets):
                continue
            flags[f"qc_{metric}"] = metrics[metric].to_numpy(dtype=bool)
        elif metric in thresholds.medians:
            values = metrics[metric].to_numpy(np.float64)
            limit = thresholds.threshold(metric, t)
            flags[f"qc_{metric}"] = values < limit if metric in FAIL_BELOW else values > limit
    return pd.DataFrame(flags, index=metrics.index)


def total_qc(flags: pd.DataFrame) -> np.ndarray:
    """uint8 (N,): 1 where the cell failed any criterion (sign convention: 1 = FAIL)."""
    return flags.to_numpy(dtype=bool).any(axis=1).astype(np.uint8)


def pass_rate(flags: pd.DataFrame) -> float:
    """Fraction of cells passing every criterion, counting passing cells explicitly
    (docs/decisions.md#qc-pass-rate-counted)."""
    if len(flags) == 0:
        raise DataError("no cells to compute a QC pass rate on")
    return float(np.count_nonzero(total_qc(flags) == 0) / len(flags))
