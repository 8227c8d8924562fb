"""The reference medians of the host path before the compiled kernel (main at 1022c9b), kept
as it was so that benchmarks/bench_pipeline.py can time that path in the same run as
today's: a sparse product counts each cell's non-zero draws per gene, then the lower median is
taken by a gather and a partition for the (cell, gene) pairs that reach the count. It returns
the same numbers as cradle_jax.data.lower_median (bench_pipeline checks that on every batch).
"""

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from cradle_jax.data.references import NO_REFERENCE


def numpy_median_rows(
    refs: np.ndarray,
    read_rows: Callable[[np.ndarray], sp.csr_matrix],
    n_genes: int,
    chunk_pairs: int = 1 << 14,
) -> sp.csr_matrix:
    """x^cf (B, G) float32 CSR: the lower median of each cell's reference rows; 0 where none.

    `read_rows(sorted_unique_indices)` returns those count rows as CSR. Counts are sparse: the
    lower median of k draws is non-zero only where at least k − ⌊(k−1)/2⌋ draws are non-zero.
    Genes that no cell's draws can make that often are set aside first (`_possible_genes`); one
    sparse product counts the non-zero draws of the rest, and the exact median is taken only for
    the (cell, gene) pairs that reach the count, `chunk_pairs` at a time.
    """
    k = (refs != NO_REFERENCE).sum(axis=1)
    cells = np.flatnonzero(k)
    if len(cells) == 0:
        return sp.csr_matrix((len(refs), n_genes), dtype=np.float32)
    drawn, k = refs[cells], k[cells]
    unique, position = np.unique(drawn, return_inverse=True)
    position = position.reshape(drawn.shape) - int(unique[0] == NO_REFERENCE)
    unique = unique[unique != NO_REFERENCE]
    rows = read_rows(unique)
    needed = k - (k - 1) // 2
    genes = _possible_genes(rows, position, k, int(needed.min()))
    valid = drawn != NO_REFERENCE
    picks = sp.csr_matrix(
        (np.ones(valid.sum(), dtype=np.float32), (np.nonzero(valid)[0], position[valid])),
        shape=(len(cells), len(unique)),
    )
    candidates = sp.csr_matrix(rows[:, genes])
    pattern = sp.csr_matrix(
        (np.ones(candidates.nnz, np.float32), candidates.indices, candidates.indptr),
        shape=candidates.shape,
    )
    nonzero_draws = (picks @ pattern).tocoo()
    reached = nonzero_draws.data >= needed[nonzero_draws.row]
    cell, gene = nonzero_draws.row[reached], nonzero_draws.col[reached]
    dense = candidates.toarray()
    median = np.zeros(len(cell), dtype=np.float32)
    for draws in np.unique(k[cell]):
        lower = (draws - 1) // 2
        pairs = np.flatnonzero(k[cell] == draws)
        for start in range(0, len(pairs), chunk_pairs):
            chunk = pairs[start : start + chunk_pairs]
            values = dense[position[cell[chunk], :draws], gene[chunk, None]]  # (pairs, draws)
            median[chunk] = np.partition(values, lower, axis=1)[:, lower]
    return sp.csr_matrix(
        (median, (cells[cell], genes[gene])), shape=(len(refs), n_genes), dtype=np.float32
    )


def _possible_genes(rows: sp.csr_matrix, position: np.ndarray, k: np.ndarray, needed: int):
    """The genes whose median can be non-zero for some cell: a cell's non-zero draws of a gene
    non-zero in n of the drawn rows are at most the sum of its n most repeated draws."""
    n_cells, width = position.shape
    ranked = np.sort(np.where(np.arange(width) < k[:, None], position, -1), axis=1)
    # run lengths of equal draws per cell (the padding -1 counts as draws: a looser bound)
    starts = np.ones_like(ranked, dtype=bool)
    starts[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    run = np.cumsum(starts, axis=1) - 1
    repeats = np.zeros((n_cells, width), dtype=np.int64)
    np.add.at(repeats, (np.arange(n_cells)[:, None], run), 1)
    most = np.cumsum(-np.sort(-repeats, axis=1), axis=1).max(axis=0)  # most[n-1]: top-n sum
    members = np.bincount(rows.indices, minlength=rows.shape[1])  # drawn rows storing each gene
    reach = np.where(members > 0, most[np.minimum(members, width) - 1], 0)
    return np.flatnonzero(reach >= needed)
