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
        raise ValueError(f"data.references must be one of {REFERENCE_MODES}, got {mode!r}")
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

    `read_rows(sorted_unique_indices)` returns those count rows as CSR; each distinct reference row
    is read and densified once per batch. Cells are processed in chunks to bound the (chunk, k, G)
    working array.
    """
    out = np.zeros((len(refs), n_genes), dtype=np.float32)
    counts = (refs != NO_REFERENCE).sum(axis=1)
    if not counts.any():
        return out
    unique, inverse = np.unique(refs[counts > 0], return_inverse=True)
    valid = unique != NO_REFERENCE
    rows = np.zeros((len(unique), n_genes), dtype=np.float32)
    rows[valid] = read_rows(unique[valid]).toarray()
    positions = np.full(refs.shape, -1, dtype=np.int64)
    positions[counts > 0] = inverse.reshape(-1, refs.shape[1])
    for k in np.unique(counts[counts > 0]):
        cells = np.flatnonzero(counts == k)
        lower = (k - 1) // 2
        for start in range(0, len(cells), chunk_cells):
            chunk = cells[start : start + chunk_cells]
            stacked = rows[positions[chunk, :k]]
            out[chunk] = np.partition(stacked, lower, axis=1)[:, lower]
    return out
