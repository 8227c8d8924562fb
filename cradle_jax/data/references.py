"""Counterfactual reference cells (docs/data.md#counterfactual-references).

Each cell draws up to `n_samples` row indices, with replacement, from a pool of cells in the
*same split* and the *same group* (treatment label by default), with global row indices (the
original indexed the whole matrix with positions inside a filtered table:
docs/decisions.md#references-within-split). The reference row x^cf is the element-wise *lower*
median of those rows. A cell with an empty pool gets no indices (all -1) and an all-zero x^cf:
the "no reference" sentinel that the counterfactual KL skips.

The draws are not stored: draw j of cell i is a pure function of (run seed, i, j), a counter-based
uniform (SplitMix64, Steele et al. 2014) scaled to the pool. So each cell keeps the same
references for the whole run, as in the original, at no memory per cell beyond its pool number
(25 int32 per cell would be 200 MB at a million cells), and any batch composition or order
reproduces them exactly.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cradle_jax.data.errors import DataError
from cradle_jax.data.seeding import host_rng
from cradle_jax.data.splits import UNUSED

REFERENCE_MODES = ("same_treatment_fail", "opposite_label", "none")
NO_REFERENCE = -1
NO_POOL = -1

SPLITMIX_GAMMA = np.uint64(0x9E3779B97F4A7C15)
SPLITMIX_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
SPLITMIX_MIX_2 = np.uint64(0x94D049BB133111EB)


def counter_uniform(key: np.uint64, counter: np.ndarray) -> np.ndarray:
    """Uniforms in [0, 1) (float64, the shape of `counter`), one per uint64 counter: the
    SplitMix64 output at position `counter` of the stream seeded with `key`."""
    with np.errstate(over="ignore"):
        z = key + (np.asarray(counter, dtype=np.uint64) + np.uint64(1)) * SPLITMIX_GAMMA
        z = (z ^ (z >> np.uint64(30))) * SPLITMIX_MIX_1
        z = (z ^ (z >> np.uint64(27))) * SPLITMIX_MIX_2
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


@dataclass(frozen=True)
class ReferencePools:
    """The pool each cell draws its references from, and the draws themselves, on demand.

    Shapes: N cells, M pooled cells (at most N), Π pools. `pool_of_cell` (N,) int32 is the pool a
    cell draws from (NO_POOL for none); pool p holds `members[offsets[p]:offsets[p + 1]]`, global
    row indices in increasing order (pools nobody draws from are left empty).
    """

    pool_of_cell: np.ndarray  # (N,) int32
    members: np.ndarray  # (M,) int32
    offsets: np.ndarray  # (Π + 1,) int64
    n_samples: int
    key: np.uint64

    def n_draws(self, cells: np.ndarray) -> np.ndarray:
        """k (len(cells),) int64: min(pool size, n_samples), 0 for a cell without a pool."""
        pool = self.pool_of_cell[cells].astype(np.int64)
        return np.minimum(self._pool_size(pool), self.n_samples)

    def draws(self, cells: np.ndarray) -> np.ndarray:
        """Reference row indices (len(cells), n_samples) int64, NO_REFERENCE-padded at the end."""
        slots = self.draw_slots(cells)
        drawn = slots != NO_REFERENCE
        rows = np.full(slots.shape, NO_REFERENCE, dtype=np.int64)
        rows[drawn] = self.members[slots[drawn]]
        return rows

    def draw_slots(self, cells: np.ndarray) -> np.ndarray:
        """Where each draw lies in `members` (len(cells), n_samples) int64, NO_REFERENCE-padded
        at the end."""
        cells = np.asarray(cells, dtype=np.int64)
        j = np.arange(self.n_samples, dtype=np.int64)
        pool = self.pool_of_cell[cells].astype(np.int64)
        size = self._pool_size(pool)
        drawn = j < np.minimum(size, self.n_samples)[:, None]
        if not drawn.any():
            return np.full((len(cells), self.n_samples), NO_REFERENCE, dtype=np.int64)
        u = counter_uniform(self.key, cells[:, None] * self.n_samples + j)
        position = self.offsets[pool][:, None] + (u * size[:, None]).astype(np.int64)
        return np.where(drawn, position, NO_REFERENCE)

    def askers_by_pool(self) -> Iterator[tuple[slice, np.ndarray]]:
        """(the pool's slots in `members`, cells drawing from it) for every non-empty pool drawn
        from, in the order of `members`."""
        order = np.argsort(self.pool_of_cell, kind="stable")
        pools, starts = np.unique(self.pool_of_cell[order], return_index=True)
        for pool, lo, hi in zip(pools, starts, [*starts[1:], len(order)], strict=True):
            slots = slice(int(self.offsets[pool]), int(self.offsets[pool + 1]))
            if pool != NO_POOL and slots.stop > slots.start:
                yield slots, order[lo:hi]

    @property
    def n_without_reference(self) -> int:
        """Cells that draw no reference (no split, or an empty pool): x^cf = 0 for them."""
        cells_per_pool = np.bincount(self.pool_of_cell + 1, minlength=len(self.offsets))
        empty = np.diff(self.offsets) == 0
        return int(cells_per_pool[0] + cells_per_pool[1:][empty].sum())

    def _pool_size(self, pool: np.ndarray) -> np.ndarray:
        return np.where(pool == NO_POOL, 0, self.offsets[pool + 1] - self.offsets[pool])


def reference_pools(
    groups: np.ndarray,
    qc_fail: np.ndarray,
    split: np.ndarray,
    mode: str,
    seed: int,
    n_samples: int,
) -> ReferencePools:
    """The reference pools of every cell under `mode`.

    `same_treatment_fail`: every cell draws from the QC-fail cells of its group and split.
    `opposite_label`: pass cells draw from fail cells and fail cells from pass cells.
    `none`: no pools. Cells of no split (UNUSED) draw nothing.
    """
    if mode not in REFERENCE_MODES:
        raise DataError(f"data.references must be one of {REFERENCE_MODES}, got {mode!r}")
    if n_samples < 1:
        raise DataError(
            f"data.n_reference_samples must be at least 1, got {n_samples} (data.references = "
            "'none' switches references off)"
        )
    key = host_rng(seed, "references").integers(0, 2**64, dtype=np.uint64, endpoint=False)
    n = len(groups)
    if mode == "none":
        return ReferencePools(
            np.full(n, NO_POOL, np.int32), np.zeros(0, np.int32), np.zeros(1, np.int64),
            n_samples, key,
        )  # fmt: skip
    group_code = pd.factorize(np.asarray(groups), sort=True)[0]
    fail = np.asarray(qc_fail, dtype=bool)
    split = np.asarray(split)
    in_split = split != UNUSED
    n_groups = int(group_code.max()) + 1
    n_pools = (int(split.max()) + 1) * n_groups * 2
    index_type = np.int32 if n_pools < 2**31 else np.int64  # per-cell arrays: keep them small
    group_code = group_code.astype(index_type)

    def pool_number(status: np.ndarray) -> np.ndarray:
        """The pool of (split, group, QC status); meaningless for cells of no split."""
        return (split.astype(index_type) * n_groups + group_code) * 2 + status

    wanted = True if mode == "same_treatment_fail" else ~fail
    pool_of_cell = np.where(in_split, pool_number(wanted), NO_POOL).astype(np.int32)
    drawn_from = np.zeros(n_pools + 1, dtype=bool)  # the last entry is NO_POOL's
    drawn_from[pool_of_cell] = True
    own = pool_number(fail)
    pooled = in_split & drawn_from[np.where(in_split, own, -1)]
    members = np.flatnonzero(pooled)
    members = members[np.argsort(own[members], kind="stable")]
    offsets = np.searchsorted(own[members], np.arange(n_pools + 1))
    return ReferencePools(pool_of_cell, members.astype(np.int32), offsets, n_samples, key)


def reference_medians(
    refs: np.ndarray, read_rows: Callable[[np.ndarray], sp.csr_matrix], n_genes: int
) -> np.ndarray:
    """x^cf (B, G) float32: the lower median of each cell's reference rows; 0 where none."""
    return reference_median_rows(refs, read_rows, n_genes).toarray()


def reference_median_rows(
    refs: np.ndarray,
    read_rows: Callable[[np.ndarray], sp.csr_matrix],
    n_genes: int,
    threads: int = 1,
) -> sp.csr_matrix:
    """x^cf (B, G) float32 CSR: the lower median of each cell's reference rows; 0 where none.

    `read_rows(sorted_unique_indices)` returns those count rows as CSR; each is read once however
    many cells draw it.
    """
    from cradle_jax.data.lower_median import lower_median_rows  # numba compiles on first use

    drawn = refs != NO_REFERENCE
    unique, position = np.unique(refs[drawn], return_inverse=True)
    positions = np.full(refs.shape, -1, dtype=np.int32)
    positions[drawn] = position
    rows = read_rows(unique) if len(unique) else sp.csr_matrix((0, n_genes), dtype=np.float32)
    return lower_median_rows(positions, rows, n_genes, threads)
