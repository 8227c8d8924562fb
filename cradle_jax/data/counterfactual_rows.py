"""Where a batch's counterfactual rows x^cf come from (SPEC §4.5, A7).

In memory, the lower medians of a batch's reference draws are taken when the batch is built,
from the count matrix itself. A backed file cannot afford that: a batch draws up to 50 reference
rows per cell at random positions of the file, and holding the reference pool in memory instead
grows with the number of cells. Since each cell's draws are fixed for the run, so is its x^cf:
for a backed file the medians are computed once, one reference pool at a time (memory bounded by
the largest pool), into a sparse sidecar file, and a batch reads its rows from there like it
reads its counts. Both give the same numbers.
"""

import logging
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np
import scipy.sparse as sp

from cradle_jax.data.counts import BackedCounts, CountSource
from cradle_jax.data.references import ReferencePools, reference_medians

log = logging.getLogger(__name__)

DENSE_CHUNK_VALUES = 1 << 20  # cells x genes of one dense chunk of medians (4 MB of float32)
NO_ROW = -1


class CounterfactualRows(Protocol):
    def rows(self, index: np.ndarray) -> np.ndarray:
        """x^cf (len(index), G) float32 of the cells `index`; 0 rows for cells without one."""
        ...


class MediansOnDemand:
    """x^cf of in-memory counts: the medians of each batch's draws, taken when it is built."""

    def __init__(self, pools: ReferencePools, counts: CountSource):
        self.pools, self.counts = pools, counts

    def rows(self, index: np.ndarray) -> np.ndarray:
        return reference_medians(self.pools.draws(index), self.counts.rows, self.counts.shape[1])


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
    """The x^cf source for `counts`: on demand in memory, precomputed on disk for a backed file
    (unless no cell draws a reference, when every x^cf is 0 and nothing needs reading)."""
    if isinstance(counts, BackedCounts) and pools.n_without_reference < len(pools.pool_of_cell):
        return MediansOnDisk(pools, counts, directory)
    return MediansOnDemand(pools, counts)


def write_reference_medians(pools: ReferencePools, counts: CountSource, path: Path) -> np.ndarray:
    """Write every cell's x^cf as rows of a CSR matrix (group "medians" of an HDF5 file, the
    layout anndata reads) and return each cell's row in it, NO_ROW for cells without references.

    Pools are read one at a time, each with one sorted read, so memory follows the largest pool.
    """
    n_genes = counts.shape[1]
    row_of_cell = np.full(counts.shape[0], NO_ROW, dtype=np.int32)
    chunk_cells = max(1, DENSE_CHUNK_VALUES // n_genes)
    with h5py.File(path, "w") as f:
        writer = _CsrWriter(f.create_group("medians"), n_genes)
        for members, askers in pools.askers_by_pool():
            pool_rows = counts.rows(members)

            def read_rows(index: np.ndarray, members=members, pool_rows=pool_rows):
                return pool_rows[np.searchsorted(members, index)]

            for start in range(0, len(askers), chunk_cells):
                cells = askers[start : start + chunk_cells]
                medians = reference_medians(pools.draws(cells), read_rows, n_genes)
                row_of_cell[cells] = writer.append(sp.csr_matrix(medians))
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
