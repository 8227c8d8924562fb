"""Counterfactual reference cells (SPEC §4.5, A1, A7).

Each cell gets up to `n_samples` row indices, drawn with replacement from a pool of cells in the
*same split* and the *same group* (treatment label by default), with global row indices (the
original code's bug D1 is not repeated). The reference row x^cf is the element-wise *lower*
median of those rows, taken only when a batch is built, so no dense (N, G) matrix is ever held.
A cell with an empty pool gets no indices (all -1) and an all-zero x^cf: the "no reference"
sentinel that the counterfactual KL skips.
"""

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from cradle_jax.data.errors import DataError
from cradle_jax.data.seeding import host_rng
from cradle_jax.data.splits import UNUSED

REFERENCE_MODES = ("same_treatment_fail", "opposite_label", "none")
NO_REFERENCE = -1


def sample_references(
    groups: np.ndarray,
    qc_fail: np.ndarray,
    split: np.ndarray,
    mode: str,
    seed: int,
    n_samples: int = 50,
) -> np.ndarray:
    """Reference row indices (N, n_samples) int32, NO_REFERENCE-padded.

    `same_treatment_fail`: every cell draws from the QC-fail cells of its group and split (§4.5).
    `opposite_label`: pass cells draw from fail cells and fail cells from pass cells.
    `none`: no references. k = min(pool size, n_samples) draws with replacement.
    """
    if mode not in REFERENCE_MODES:
        raise DataError(f"data.references must be one of {REFERENCE_MODES}, got {mode!r}")
    if n_samples < 1:
        raise DataError(
            f"data.n_reference_samples must be at least 1, got {n_samples} (data.references = "
            "'none' switches references off)"
        )
    refs = np.full((len(groups), n_samples), NO_REFERENCE, dtype=np.int32)
    if mode == "none":
        return refs
    rng = host_rng(seed, "references")
    qc_fail = np.asarray(qc_fail, dtype=bool)
    group_codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)[1]
    for split_code in np.unique(split[split != UNUSED]):
        for group in np.unique(group_codes[split == split_code]):
            members = np.flatnonzero((split == split_code) & (group_codes == group))
            for own_status in (False, True):
                cells = members[qc_fail[members] == own_status]
                wanted = True if mode == "same_treatment_fail" else not own_status
                pool = members[qc_fail[members] == wanted]
                k = min(len(pool), n_samples)
                if k == 0 or len(cells) == 0:
                    continue
                refs[cells, :k] = pool[rng.integers(0, len(pool), size=(len(cells), k))]
    return refs


def reference_medians(
    refs: np.ndarray,
    read_rows: Callable[[np.ndarray], sp.csr_matrix],
    n_genes: int,
    chunk_cells: int = 64,
) -> np.ndarray:
    """x^cf (B, G) float32: the lower median of each cell's reference rows; 0 where none.

    `read_rows(sorted_unique_indices)` returns those count rows as CSR. Counts are sparse, and the
    lower median of k draws is non-zero only for a gene with at least k − ⌊(k−1)/2⌋ non-zero
    draws; one sparse product finds those genes, and the exact median is taken on them alone.
    """
    out = np.zeros((len(refs), n_genes), dtype=np.float32)
    k = (refs != NO_REFERENCE).sum(axis=1)
    cells = np.flatnonzero(k)
    if len(cells) == 0:
        return out
    drawn = refs[cells]
    unique, position = np.unique(drawn, return_inverse=True)
    position = position.reshape(drawn.shape) - int(unique[0] == NO_REFERENCE)
    unique = unique[unique != NO_REFERENCE]
    rows = read_rows(unique)
    valid = drawn != NO_REFERENCE
    picks = sp.csr_matrix(
        (np.ones(valid.sum(), dtype=np.float32), (np.nonzero(valid)[0], position[valid])),
        shape=(len(cells), len(unique)),
    )
    nonzero_draws = (picks @ (rows != 0).astype(np.float32)).tocoo()
    needed = k[cells] - (k[cells] - 1) // 2
    genes = np.unique(nonzero_draws.col[nonzero_draws.data >= needed[nonzero_draws.row]])
    if len(genes) == 0:
        return out
    dense = rows[:, genes].toarray()
    for draws in np.unique(k[cells]):
        group = np.flatnonzero(k[cells] == draws)
        lower = (draws - 1) // 2
        for start in range(0, len(group), chunk_cells):
            chunk = group[start : start + chunk_cells]
            stacked = dense[position[chunk, :draws]]  # (chunk, draws, genes)
            out[np.ix_(cells[chunk], genes)] = np.partition(stacked, lower, axis=1)[:, lower]
    return out
