"""Training-split normalisation statistics and per-split obs-count vectors
(docs/data.md#split-statistics)."""

from collections.abc import Iterator
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


def _selected_blocks(
    source: CountSource, cells: np.ndarray
) -> Iterator[tuple[np.ndarray, sp.csr_matrix]]:
    """(row indices, their counts) of the rows `cells`, block by block in row order."""
    selected = np.zeros(source.shape[0], dtype=bool)
    selected[cells] = True
    for start, block in source.blocks():
        local = np.flatnonzero(selected[start : start + block.shape[0]])
        yield start + local, block[local]


def log_standardize_stats(source: CountSource, cells: np.ndarray) -> LogStandardizeStats:
    """Stream the rows `cells` block by block; sums in float64 so large N stays exact enough."""
    n_genes = source.shape[1]
    total = np.zeros(n_genes, dtype=np.float64)
    total_sq = np.zeros(n_genes, dtype=np.float64)
    for _, rows in _selected_blocks(source, cells):
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
    """The obs-count vectors of the split made of `cells` (docs/method.md#plate-reweighting)."""
    n_d = np.asarray((dosage[cells] != 0).sum(axis=0)).ravel().astype(np.float32)
    n_qc = (qc[cells] != 0).sum(axis=0).astype(np.float32)
    return ObsCounts(n_d, n_qc)


@dataclass(frozen=True)
class CountMoments:
    """Moment estimates, per gene (G,) float64, of x ~ NB(mean ℓ·p, inverse dispersion θ) over a
    set of cells with library sizes ℓ: `proportion` p, a gene's share of a cell's counts, and
    `dispersion` θ from Var(x) = μ + μ²/θ (inf where the counts vary no more than Poisson's).

    The spread of the cells' basal states counts as dispersion here, so θ is at most the one of
    a model that explains part of that spread; as a starting point it is on the right scale.
    """

    proportion: np.ndarray
    dispersion: np.ndarray


def count_moments(
    source: CountSource, cells: np.ndarray, library: np.ndarray, pseudo_count: float = 0.5
) -> CountMoments:
    """Stream the rows `cells`; p = (Σx + c) / (Σℓ + cG) keeps an unseen gene's share above 0.

    θ = Σμ² / Σ((x − μ)² − μ) with μ = ℓp, the sums taken over cells; the residual sum expands to
    Σx² − 2pΣxℓ + p²Σℓ² − pΣℓ, so only non-zero counts are visited.
    """
    n_genes = source.shape[1]
    sum_x = np.zeros(n_genes, dtype=np.float64)
    sum_x2 = np.zeros(n_genes, dtype=np.float64)
    sum_xl = np.zeros(n_genes, dtype=np.float64)
    for rows, picked in _selected_blocks(source, cells):
        x = picked.data.astype(np.float64)
        cell_library = np.repeat(library[rows].astype(np.float64), np.diff(picked.indptr))
        sum_x += np.bincount(picked.indices, weights=x, minlength=n_genes)
        sum_x2 += np.bincount(picked.indices, weights=x * x, minlength=n_genes)
        sum_xl += np.bincount(picked.indices, weights=x * cell_library, minlength=n_genes)
    ell = library[cells].astype(np.float64)
    sum_l, sum_l2 = ell.sum(), (ell * ell).sum()
    p = (sum_x + pseudo_count) / (sum_l + pseudo_count * n_genes)
    excess = sum_x2 - 2 * p * sum_xl + p * p * sum_l2 - p * sum_l
    with np.errstate(divide="ignore"):
        theta = np.where(excess > 0, p * p * sum_l2 / np.where(excess > 0, excess, 1.0), np.inf)
    return CountMoments(proportion=p, dispersion=theta)
