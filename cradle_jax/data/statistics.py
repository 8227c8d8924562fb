"""Training-split normalisation statistics (SPEC §2.3) and per-split obs-count vectors (§4.6)."""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from cradle_jax.data.counts import CountSource


@dataclass(frozen=True)
class LogStandardizeStats:
    """Per-gene mean and unbiased (N−1) std of log(1+x) over training cells, (G,) float32.

    A gene with zero training variance has std 0; the encoder divides such a gene by 1 instead
    (see `cradle_jax.models.cradle.log_standardize`).
    """

    mean: np.ndarray
    std: np.ndarray


def log_standardize_stats(source: CountSource, cells: np.ndarray) -> LogStandardizeStats:
    """Stream the rows `cells` block by block; sums in float64 so large N stays exact enough."""
    n_genes = source.shape[1]
    total = np.zeros(n_genes, dtype=np.float64)
    total_sq = np.zeros(n_genes, dtype=np.float64)
    selected = np.zeros(source.shape[0], dtype=bool)
    selected[cells] = True
    for start, block in source.blocks():
        rows = block[np.flatnonzero(selected[start : start + block.shape[0]])]
        logged = np.log1p(rows.data.astype(np.float64))  # log(1 + 0) = 0: non-zeros suffice
        total += np.bincount(rows.indices, weights=logged, minlength=n_genes)
        total_sq += np.bincount(rows.indices, weights=logged * logged, minlength=n_genes)
    n = len(cells)
    mean = total / n
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = np.maximum(total_sq - n * mean**2, 0.0) / (n - 1)
    return LogStandardizeStats(mean.astype(np.float32), np.sqrt(variance).astype(np.float32))


@dataclass(frozen=True)
class ObsCounts:
    """N^D (T,): cells with a non-zero dosage per perturbation; N^qc (Q,): fail cells per column."""

    dosage: np.ndarray
    qc: np.ndarray


def obs_counts(dosage: sp.csr_matrix, qc: np.ndarray, cells: np.ndarray) -> ObsCounts:
    """The obs-count vectors of the split made of `cells` (the plate reweighting of §3.3)."""
    n_d = np.asarray((dosage[cells] != 0).sum(axis=0)).ravel().astype(np.float32)
    n_qc = (qc[cells] != 0).sum(axis=0).astype(np.float32)
    return ObsCounts(n_d, n_qc)
