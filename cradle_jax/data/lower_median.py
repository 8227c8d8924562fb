"""Element-wise lower medians of sets of sparse count rows, compiled with numba.

A cell's x^cf is the lower median, gene by gene, of its k drawn reference rows
(docs/data.md#counterfactual-references). Counts are sparse: the median of a gene is non-zero
only where at least k − ⌊(k−1)/2⌋ of the draws store it, and a cell's draws store ~k × 100 values
of which ~40 genes reach that. So each cell's draws are scattered once into per-gene lists, and
the order statistic is taken only for the genes that reach the count. The vectorised NumPy/SciPy
form of the same computation (a sparse product to count the non-zero draws, then a gather and a
partition per reached pair) spent most of its time building temporaries, and at a million cells
the first training batch waited for it (benchmarks/README.md#backed-files). numba comes with
scanpy, so this costs no new dependency.

Exact for any non-negative values: a gene's values are ranked by counting when they are small
integers (counts almost always are), by a quickselect otherwise. Training's pass over every cell
(`pool_median_rows`) also draws each cell's references inside the kernel, with the counter-based
uniforms of `ReferencePools.draw_slots`, so the draws cost no NumPy pass and run on every thread.
"""

from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import numba
import numba.experimental
import numpy as np
import scipy.sparse as sp

from cradle_jax.data.references import SPLITMIX_GAMMA, SPLITMIX_MIX_1, SPLITMIX_MIX_2

SMALL_COUNT = 256  # values below this (integers) are ranked by counting
MIN_CELLS_PER_THREAD = 2_048  # fewer cells are not worth a thread


def lower_median_rows(
    position: np.ndarray, rows: sp.csr_matrix, n_genes: int, threads: int = 1
) -> sp.csr_matrix:
    """(C, G) float32 CSR: row i the element-wise lower median of `rows[position[i, :k_i]]`,
    where `position` (C, k) holds row numbers into `rows`, padded with -1 at the end (k_i = the
    row numbers before the padding; a cell with none gets an empty row)."""
    position = np.ascontiguousarray(position, dtype=np.int32)
    parts = _parts(rows)

    def run(lo: int, hi: int):
        return _position_medians(position[lo:hi], *parts, n_genes)

    return _in_threads(len(position), threads, run, n_genes)


def pool_median_rows(
    cells: np.ndarray,
    pool_start: np.ndarray,
    pool_size: np.ndarray,
    n_samples: int,
    key: np.uint64,
    rows: sp.csr_matrix,
    n_genes: int,
    threads: int = 1,
) -> sp.csr_matrix:
    """(C, G) float32 CSR: row i the lower median of the min(pool_size[i], n_samples) rows that
    cell cells[i] draws from its pool, the rows pool_start[i] … pool_start[i] + pool_size[i] − 1
    of `rows`: draw j is row pool_start + ⌊u·pool_size⌋ with u the SplitMix64 uniform of
    counter cells[i]·n_samples + j under `key`, exactly as ReferencePools.draw_slots draws."""
    cells = np.ascontiguousarray(cells, dtype=np.int64)
    pool_start = np.ascontiguousarray(pool_start, dtype=np.int64)
    pool_size = np.ascontiguousarray(pool_size, dtype=np.int64)
    parts = _parts(rows)

    def run(lo: int, hi: int):
        return _pool_medians(
            cells[lo:hi], pool_start[lo:hi], pool_size[lo:hi], n_samples, np.uint64(key),
            *parts, n_genes,
        )  # fmt: skip

    return _in_threads(len(cells), threads, run, n_genes)


def _parts(rows: sp.csr_matrix) -> tuple:
    """The CSR arrays in the kernel's types, and whether every value is a whole number."""
    values = rows.data.astype(np.float32, copy=False)
    integral = bool(np.all(values == np.floor(values)))
    indptr = rows.indptr.astype(np.int64, copy=False)
    return indptr, rows.indices.astype(np.int32, copy=False), values, integral


def _in_threads(n_cells: int, threads: int, run, n_genes: int) -> sp.csr_matrix:
    """run(lo, hi) over contiguous ranges of cells on up to `threads` threads, the (per-cell
    counts, genes, medians) of each range joined into one CSR matrix in cell order."""
    bounds = np.linspace(0, n_cells, _thread_count(n_cells, threads) + 1).astype(np.int64)
    if len(bounds) == 2:
        pieces = [run(0, n_cells)]
    else:
        with ThreadPoolExecutor(len(bounds) - 1) as executor:
            futures = [executor.submit(run, lo, hi) for lo, hi in pairwise(bounds)]
            pieces = [future.result() for future in futures]
    found = np.concatenate([np.zeros(0, np.int64), *(piece[0] for piece in pieces)])
    row_start = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(found, out=row_start[1:])
    genes = np.concatenate([np.zeros(0, np.int32), *(piece[1] for piece in pieces)])
    medians = np.concatenate([np.zeros(0, np.float32), *(piece[2] for piece in pieces)])
    return sp.csr_matrix((medians, genes, row_start), shape=(n_cells, n_genes), dtype=np.float32)


def _thread_count(n_cells: int, threads: int) -> int:
    return int(max(1, min(threads, n_cells // MIN_CELLS_PER_THREAD)))


@numba.njit(nogil=True, cache=True)
def _position_medians(position, indptr, indices, values, integral, n_genes):
    """(genes found per cell, genes, medians) of the cells whose draws `position` lists."""
    width = position.shape[1]
    scratch = _Scratch(n_genes, width, position.shape[0])
    for i in range(position.shape[0]):
        k = 0
        while k < width and position[i, k] >= 0:
            k += 1
        _cell_medians(position[i, :k], indptr, indices, values, integral, scratch, i)
    return scratch.result()


@numba.njit(nogil=True, cache=True)
def _pool_medians(
    cells, pool_start, pool_size, n_samples, key, indptr, indices, values, integral, n_genes
):
    """(genes found per cell, genes, medians) of `cells`, each drawing from its pool."""
    scratch = _Scratch(n_genes, n_samples, len(cells))
    draws = np.empty(n_samples, dtype=np.int64)
    for i in range(len(cells)):
        k = min(pool_size[i], n_samples)
        for j in range(k):
            u = _uniform(key, np.uint64(cells[i]) * np.uint64(n_samples) + np.uint64(j))
            draws[j] = pool_start[i] + np.int64(u * pool_size[i])
        _cell_medians(draws[:k], indptr, indices, values, integral, scratch, i)
    return scratch.result()


@numba.njit(nogil=True, cache=True, inline="always")
def _uniform(key, counter):
    """The SplitMix64 uniform in [0, 1) at `counter` of the stream seeded with `key`."""
    z = key + (counter + np.uint64(1)) * SPLITMIX_GAMMA
    z = (z ^ (z >> np.uint64(30))) * SPLITMIX_MIX_1
    z = (z ^ (z >> np.uint64(27))) * SPLITMIX_MIX_2
    z = z ^ (z >> np.uint64(31))
    return np.float64(z >> np.uint64(11)) * 2.0**-53


@numba.experimental.jitclass(
    [
        ("stored", numba.float32[:, :]),
        ("fill", numba.int32[:]),
        ("histogram", numba.int32[:]),
        ("found", numba.int64[:]),
        ("genes", numba.int32[:]),
        ("medians", numba.float32[:]),
        ("size", numba.int64),
    ]
)
class _Scratch:
    """One thread's per-gene lists, histogram and growing output."""

    def __init__(self, n_genes, width, n_cells):
        self.stored = np.empty((n_genes, max(width, 1)), dtype=np.float32)
        self.fill = np.zeros(n_genes, dtype=np.int32)
        self.histogram = np.zeros(SMALL_COUNT + 1, dtype=np.int32)
        self.found = np.zeros(n_cells, dtype=np.int64)
        self.genes = np.empty(64 * n_cells + n_genes, dtype=np.int32)
        self.medians = np.empty(64 * n_cells + n_genes, dtype=np.float32)
        self.size = 0

    def room_for(self, n):
        if self.size + n > len(self.genes):
            capacity = max(2 * len(self.genes), self.size + n)
            genes = np.empty(capacity, dtype=np.int32)
            genes[: self.size] = self.genes[: self.size]
            medians = np.empty(capacity, dtype=np.float32)
            medians[: self.size] = self.medians[: self.size]
            self.genes, self.medians = genes, medians

    def result(self):
        return self.found, self.genes[: self.size], self.medians[: self.size]


@numba.njit(nogil=True, cache=True)
def _cell_medians(draws, indptr, indices, values, integral, scratch, i):
    """Scatter the stored values of rows `draws` into per-gene lists; append the order
    statistic of each gene stored by enough of them (ascending genes) as cell i's row."""
    stored, fill = scratch.stored, scratch.fill
    k = len(draws)
    for row in draws:
        for p in range(indptr[row], indptr[row + 1]):
            gene = indices[p]
            stored[gene, fill[gene]] = values[p]
            fill[gene] += 1
    lower = (k - 1) // 2
    n_genes = len(fill)
    scratch.room_for(n_genes)
    out = scratch.size
    for gene in range(n_genes):
        n_stored = fill[gene]
        if n_stored > 0 and k - n_stored <= lower:
            scratch.genes[out] = gene
            scratch.medians[out] = _order_statistic(
                stored, gene, n_stored, lower - (k - n_stored), integral, scratch.histogram
            )
            out += 1
        fill[gene] = 0
    scratch.found[i] = out - scratch.size
    scratch.size = out


@numba.njit(nogil=True, cache=True, inline="always")
def _order_statistic(stored, gene, n, rank, integral, histogram):
    """The rank-th smallest (0-based) of stored[gene, :n]; reorders that row."""
    if not integral:
        return _quickselect(stored, gene, n, rank)
    largest = 0
    for a in range(n):
        value = np.int32(min(stored[gene, a], SMALL_COUNT))
        histogram[value] += 1
        largest = max(largest, value)
    result = -1.0
    below = 0
    for value in range(largest + 1):  # the walk clears what it passes
        below += histogram[value]
        histogram[value] = 0
        if below > rank and result < 0:
            result = float(value)
    if largest == SMALL_COUNT:  # a value beyond the histogram: select among the values
        return _quickselect(stored, gene, n, rank)
    return result


@numba.njit(nogil=True, cache=True, inline="always")
def _quickselect(stored, gene, n, rank):
    """Hoare's selection on stored[gene, :n]: partition around a middle pivot, keep the side
    holding `rank`."""
    lo, hi = 0, n - 1
    while lo < hi:
        pivot = stored[gene, (lo + hi) >> 1]
        i, j = lo, hi
        while i <= j:
            while stored[gene, i] < pivot:
                i += 1
            while stored[gene, j] > pivot:
                j -= 1
            if i <= j:
                stored[gene, i], stored[gene, j] = stored[gene, j], stored[gene, i]
                i += 1
                j -= 1
        if rank <= j:
            hi = j
        elif rank >= i:
            lo = i
        else:
            return pivot
    return stored[gene, rank]
