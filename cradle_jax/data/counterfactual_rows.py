"""Where a batch's counterfactual rows x^cf come from (docs/data.md#counterfactual-references).

Each cell's reference draws are fixed for the run, so is its x^cf, the lower median of those
draws. Training therefore computes every cell's x^cf once, a group of reference pools at a time
(memory bounded by the group), and a batch reads its rows like it reads its counts: from a sparse
matrix in memory, or for a backed file from a sparse sidecar file (holding the medians in memory
would grow with the number of cells). A backed file's pool members, scattered through it, are
first copied group by group into a staging file in one sequential pass, far cheaper than one
request per member row (benchmarks/README.md#backed-files). Before that one pass, in memory, a
few cells' medians are taken on demand (evaluation asks for a few cells). All give the same
numbers.
"""

import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np
import scipy.sparse as sp

from cradle_jax.data.counts import BackedCounts, CountSource, InMemoryCounts
from cradle_jax.data.references import ReferencePools, reference_medians

log = logging.getLogger(__name__)

MEDIAN_CELLS = 8_192  # askers whose medians are taken together (their draws, their rows)
# Stored values of pool members held at once (8 MB as float32 values and int32 columns), the
# members' gene bit sets counted as the values of the same size.
POOL_READ_VALUES = 1 << 20
VALUE_BYTES = 8
# Threads taking medians. The compiled kernel allocates once per call, so threads no longer grow
# the heap the way NumPy temporaries in each thread's malloc arena did.
MEDIAN_THREADS = min(4, os.cpu_count() or 1)
STAGING_CACHE_BYTES = 1 << 18  # HDF5 chunk cache of each staging dataset: one chunk
NO_ROW = -1


class CounterfactualRows(Protocol):
    def rows(self, index: np.ndarray) -> np.ndarray:
        """x^cf (len(index), G) float32 of the cells `index`; 0 rows for cells without one."""
        ...

    def prepare(self) -> None:
        """Compute every cell's x^cf now, so that no batch waits for it."""
        ...


class MediansInMemory:
    """x^cf of in-memory counts: every cell's medians computed once into a CSR matrix by
    `table()` (training asks for it first), on demand from the draws before then."""

    def __init__(self, pools: ReferencePools, counts: InMemoryCounts):
        self.pools, self.counts = pools, counts
        self._lock = threading.Lock()
        self._table: sp.csr_matrix | None = None

    def rows(self, index: np.ndarray) -> np.ndarray:
        if self._table is not None:
            return self._table[index].toarray()
        return reference_medians(self.pools.draws(index), self.counts.rows, self.counts.shape[1])

    def prepare(self) -> None:
        self.table()

    def table(self) -> sp.csr_matrix:
        """Every cell's x^cf (N, G) float32 CSR; rows of cells without a reference are empty."""
        with self._lock:
            if self._table is None:
                started = time.perf_counter()
                self._table = median_table(self.pools, self.counts)
                log.info(
                    "reference medians of %d cells computed in %.1f s",
                    self._table.shape[0] - self.pools.n_without_reference,
                    time.perf_counter() - started,
                )  # fmt: skip
            return self._table


class MediansOnDisk:
    """x^cf of a backed file: all medians computed on first use into a CSR sidecar file in a
    temporary directory (removed when this object goes), then read by row like the counts."""

    def __init__(self, pools: ReferencePools, counts: BackedCounts, directory: str | None = None):
        self.pools, self.counts = pools, counts
        self._directory = directory
        self._lock = threading.Lock()
        self._store: BackedCounts | None = None
        self._row_of_cell: np.ndarray | None = None

    def rows(self, index: np.ndarray) -> np.ndarray:
        store, row_of_cell = self._ready()
        out = np.zeros((len(index), self.counts.shape[1]), dtype=np.float32)
        row = row_of_cell[index]
        present = row != NO_ROW
        if present.any():
            out[present] = store.rows(row[present]).toarray()
        return out

    def prepare(self) -> None:
        self._ready()

    def _ready(self) -> tuple[BackedCounts, np.ndarray]:
        with self._lock:
            if self._store is None:
                folder = Path(tempfile.mkdtemp(prefix="cradle_jax_cf_", dir=self._directory))
                path = folder / "reference_medians.h5"
                started = time.perf_counter()
                self._row_of_cell = write_reference_medians(self.pools, self.counts, path)
                self._store = BackedCounts(path, "medians")
                weakref.finalize(self, _remove, self._store, folder)
                log.info(
                    "reference medians of %d cells written to %s in %.1f s",
                    int((self._row_of_cell != NO_ROW).sum()), path, time.perf_counter() - started,
                )  # fmt: skip
            return self._store, self._row_of_cell


def _remove(store: BackedCounts, folder: Path) -> None:
    store.close()
    shutil.rmtree(folder, ignore_errors=True)


def counterfactual_rows(
    pools: ReferencePools, counts: CountSource, directory: str | None = None
) -> CounterfactualRows:
    """The x^cf source for `counts`: in memory, or precomputed on disk for a backed file (unless
    no cell draws a reference, when every x^cf is 0 and nothing needs reading)."""
    if not isinstance(counts, BackedCounts):
        return MediansInMemory(pools, counts)
    if pools.n_without_reference < len(pools.pool_of_cell):
        return MediansOnDisk(pools, counts, directory)
    return MediansInMemory(pools, InMemoryCounts(sp.csr_matrix(counts.shape, dtype=np.float32)))


def median_blocks(
    pools: ReferencePools,
    counts: CountSource,
    threads: int = 1,
    directory: str | Path | None = None,
) -> Iterator[tuple[np.ndarray, sp.csr_matrix]]:
    """(cells, their x^cf rows as CSR) in blocks, for every cell that draws a reference.

    Pools are taken in groups of about POOL_READ_VALUES stored values, so memory follows that
    budget (or the largest pool, if it is larger). A group's member rows are read once, from
    memory or, for a backed file, from a staging file written in one pass over it (`directory`
    holds it for the pass); each block of MEDIAN_CELLS askers then takes its medians on
    `threads` threads.
    """
    from cradle_jax.data.lower_median import indexed_rows, pool_median_rows  # numba compiles

    for slots, askers, rows in _pool_groups(pools, counts, directory):
        members = indexed_rows(rows)
        for start in range(0, len(askers), MEDIAN_CELLS):
            cells = askers[start : start + MEDIAN_CELLS]
            pool = pools.pool_of_cell[cells]
            first, after = pools.offsets[pool], pools.offsets[pool + 1]
            block = pool_median_rows(
                cells, first - slots.start, after - first, pools.n_samples, pools.key, members,
                threads,
            )  # fmt: skip
            yield cells, block


def _pool_groups(
    pools: ReferencePools, counts: CountSource, directory: str | Path | None
) -> Iterator[tuple[slice, np.ndarray, sp.csr_matrix]]:
    """(the group's slots in `pools.members`, the cells drawing from it, the member rows in
    slot order) for every group of pools read together."""
    groups = list(_read_groups(pools, counts))
    if not isinstance(counts, BackedCounts):
        for slots, askers in groups:
            yield slots, askers, counts.rows(pools.members[slots])
        return
    folder = Path(tempfile.mkdtemp(prefix="cradle_jax_pools_", dir=directory))
    try:
        staged = _stage_groups(pools, counts, [slots for slots, _ in groups], folder / "pools.h5")
        with h5py.File(staged, "r") as store:
            for number, (slots, askers) in enumerate(groups):
                rows = _read_csr(store[str(number)], n_genes=counts.shape[1])
                members = pools.members[slots]
                yield slots, askers, rows[np.argsort(np.argsort(members, kind="stable"))]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _read_groups(pools: ReferencePools, counts: CountSource) -> Iterator[tuple[slice, np.ndarray]]:
    """Consecutive pools merged into groups of about POOL_READ_VALUES stored values (from the
    file's mean row size): (the group's slots in `pools.members`, the cells drawing from it)."""
    from cradle_jax.data.lower_median import index_bytes_per_row

    n_cells = max(counts.shape[0], 1)
    index_values = index_bytes_per_row(counts.shape[1]) / VALUE_BYTES
    values_per_row = max(counts.stored_values_total() / n_cells, 1.0) + index_values
    group, size = [], 0.0
    for slots, askers in pools.askers_by_pool():
        values = (slots.stop - slots.start) * values_per_row
        if group and size + values > POOL_READ_VALUES:
            yield _merged(group)
            group, size = [], 0.0
        group.append((slots, askers))
        size += values
    if group:
        yield _merged(group)


def _merged(group: list[tuple[slice, np.ndarray]]) -> tuple[slice, np.ndarray]:
    """Pools with consecutive slots as one: their slots' span, their askers."""
    slots = slice(group[0][0].start, group[-1][0].stop)
    return slots, np.concatenate([askers for _, askers in group])


def _stage_groups(
    pools: ReferencePools, counts: BackedCounts, groups: list[slice], path: Path
) -> Path:
    """Write each group's member rows (in file order) to group str(number) of an HDF5 file, in
    one sequential pass over the counts."""
    group_of_slot = np.repeat(np.arange(len(groups)), [g.stop - g.start for g in groups])
    members = np.concatenate([pools.members[:0], *(pools.members[g] for g in groups)])
    order = np.argsort(members, kind="stable")
    sorted_rows, group_of_row = members[order], group_of_slot[order]
    # one chunk of cache per dataset: the default 1 MB each, over three datasets per group,
    # would grow with the number of groups, so with the file
    with h5py.File(path, "w", rdcc_nbytes=STAGING_CACHE_BYTES) as f:
        writers = [_CsrWriter(f.create_group(str(n)), counts.shape[1]) for n in range(len(groups))]
        done = 0
        for rows, block in counts.rows_in_file_order(sorted_rows):
            block_groups = group_of_row[done : done + len(rows)]
            for number in np.unique(block_groups):
                writers[number].append(block[block_groups == number])
            done += len(rows)
        for writer in writers:
            writer.close()
    return path


def _read_csr(group: h5py.Group, n_genes: int) -> sp.csr_matrix:
    return sp.csr_matrix(
        (group["data"][:], group["indices"][:], group["indptr"][:]),
        shape=(len(group["indptr"]) - 1, n_genes),
    )


def median_table(
    pools: ReferencePools, counts: CountSource, threads: int = MEDIAN_THREADS
) -> sp.csr_matrix:
    """Every cell's x^cf as one (N, G) float32 CSR matrix, in cell order."""
    n_cells, n_genes = counts.shape
    cells, blocks = [np.zeros(0, np.int64)], [sp.csr_matrix((0, n_genes), dtype=np.float32)]
    for block_cells, block in median_blocks(pools, counts, threads):
        cells.append(block_cells)
        blocks.append(block)
    stacked = sp.vstack([*blocks, sp.csr_matrix((1, n_genes), dtype=np.float32)], format="csr")
    empty_row = stacked.shape[0] - 1
    row_of_cell = np.full(n_cells, empty_row, dtype=np.int64)
    row_of_cell[np.concatenate(cells)] = np.arange(empty_row)
    return stacked[row_of_cell]


def write_reference_medians(pools: ReferencePools, counts: CountSource, path: Path) -> np.ndarray:
    """Write every cell's x^cf as rows of a CSR matrix (group "medians" of an HDF5 file, the
    layout anndata reads) and return each cell's row in it, NO_ROW for cells without references.
    """
    row_of_cell = np.full(counts.shape[0], NO_ROW, dtype=np.int32)
    with h5py.File(path, "w") as f:
        writer = _CsrWriter(f.create_group("medians"), counts.shape[1])
        for cells, block in median_blocks(pools, counts, MEDIAN_THREADS, path.parent):
            row_of_cell[cells] = writer.append(block)
        writer.close()
    return row_of_cell


class _CsrWriter:
    """Appends CSR rows to an HDF5 group; `close` adds the attributes anndata reads it by."""

    def __init__(self, group: h5py.Group, n_columns: int):
        self.group, self.n_columns = group, n_columns
        options = dict(maxshape=(None,), chunks=(1 << 16,))
        self.data = group.create_dataset("data", shape=(0,), dtype=np.float32, **options)
        self.indices = group.create_dataset("indices", shape=(0,), dtype=np.int32, **options)
        self.indptr = group.create_dataset("indptr", data=np.zeros(1, np.int64), **options)
        self.n_rows = self.nnz = 0

    def append(self, block: sp.csr_matrix) -> np.ndarray:
        """Append `block`; returns the row numbers its rows got."""
        rows = np.arange(self.n_rows, self.n_rows + block.shape[0])
        for dataset, values in (
            (self.data, block.data),
            (self.indices, block.indices),
            (self.indptr, self.nnz + block.indptr[1:].astype(np.int64)),
        ):
            start = dataset.shape[0]
            dataset.resize((start + len(values),))
            dataset[start:] = values
        self.n_rows, self.nnz = self.n_rows + block.shape[0], self.nnz + block.nnz
        return rows

    def close(self) -> None:
        self.group.attrs.update(
            {
                "encoding-type": "csr_matrix",
                "encoding-version": "0.1.0",
                "shape": (self.n_rows, self.n_columns),
            }
        )
