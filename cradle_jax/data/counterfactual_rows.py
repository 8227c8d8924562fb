"""Where a batch's counterfactual rows x^cf come from (docs/data.md#counterfactual-references).

Each cell's reference draws are fixed for the run, so is its x^cf, the lower median of those
draws. Training therefore computes every cell's x^cf once, one reference pool at a time (memory
bounded by the largest pool), and a batch reads its rows like it reads its counts: from a sparse
matrix in memory, or for a backed file from a sparse sidecar file (holding the medians in memory
would grow with the number of cells). Before that one pass, in memory, a few cells' medians are
taken on demand (evaluation asks for a few cells). All give the same numbers.
"""

import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np
import scipy.sparse as sp

from cradle_jax.data.counts import BackedCounts, CountSource, InMemoryCounts
from cradle_jax.data.references import (
    ReferencePools,
    reference_median_rows,
    reference_medians,
)

log = logging.getLogger(__name__)

DENSE_CHUNK_VALUES = 1 << 19  # cells x genes of one chunk of medians (2 MB as dense float32)
# Stored values of pool members read at once (8 MB as float32 values and int32 columns): pools
# are read together up to this size, so a backed file is read in a few passes, not one per pool.
POOL_READ_VALUES = 1 << 20
# Threads computing medians for in-memory data. A backed file's medians are computed on one:
# each thread's malloc arena keeps its freed memory, and a backed load's memory must stay flat
# (at 1M cells two threads took 33 s and a peak 31 MB higher than one thread's 49 s).
MEDIAN_THREADS = min(4, os.cpu_count() or 1)
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
    pools: ReferencePools, counts: CountSource, threads: int = 1
) -> Iterator[tuple[np.ndarray, sp.csr_matrix]]:
    """(cells, their x^cf rows as CSR) in blocks, for every cell that draws a reference.

    Pools are read together up to POOL_READ_VALUES stored values, each group with one sorted
    read, so memory follows that budget (or the largest pool, if it is larger). The blocks are
    computed on `threads` threads (NumPy and SciPy's sparse products release the GIL) and come
    out in order.
    """
    n_genes = counts.shape[1]
    chunk_cells = max(1, DENSE_CHUNK_VALUES // n_genes)
    with ThreadPoolExecutor(threads) as executor:
        for group in _read_groups(pools, counts):
            pooled = np.sort(np.concatenate([members for members, _ in group]))
            pooled_rows = counts.rows(pooled)

            def medians(cells: np.ndarray, pooled=pooled, pooled_rows=pooled_rows):
                def read_rows(index: np.ndarray):
                    return pooled_rows[np.searchsorted(pooled, index)]

                return reference_median_rows(pools.draws(cells), read_rows, n_genes)

            chunks = (
                askers[start : start + chunk_cells]
                for _, askers in group
                for start in range(0, len(askers), chunk_cells)
            )
            yield from _in_order(executor, medians, chunks, window=threads)


def _in_order(executor: ThreadPoolExecutor, function, items: Iterator, window: int) -> Iterator:
    """(item, function(item)) for each item, in order, at most `window` computed ahead (so
    memory holds that many results, not all of them)."""
    pending = deque()
    for item in items:
        pending.append((item, executor.submit(function, item)))
        if len(pending) >= window:
            done, future = pending.popleft()
            yield done, future.result()
    while pending:
        done, future = pending.popleft()
        yield done, future.result()


def _read_groups(
    pools: ReferencePools, counts: CountSource
) -> Iterator[list[tuple[np.ndarray, np.ndarray]]]:
    """The (members, askers) of every pool drawn from, in groups read together."""
    group, size = [], 0
    for members, askers in pools.askers_by_pool():
        values = counts.stored_values(members)
        if group and size + values > POOL_READ_VALUES:
            yield group
            group, size = [], 0
        group.append((members, askers))
        size += values
    if group:
        yield group


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
        for cells, block in median_blocks(pools, counts):
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
