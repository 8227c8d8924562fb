"""Where the raw count matrix lives: an in-memory CSR, or a backed .h5ad read by row blocks.

Both answer the same two questions (rows by index, rows block by block) so that nothing
downstream holds a dense (N, G) matrix (docs/data.md#memory).
"""

import os
from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import scipy.sparse as sp

from cradle_jax.data.direct_reads import DirectDataset
from cradle_jax.data.errors import DataError

# Rows per block of a streaming pass. Each pass leaves its blocks' freed memory in the C heap,
# so the peak of a backed load grows with the block; smaller blocks read more slowly
# (benchmarks/README.md#backed-files).
ROW_BLOCK = 8_192
# float32 holds every integer below 2^24 exactly; a larger count could have been rounded.
FLOAT32_EXACT_LIMIT = 2**24
# Wanted rows less than this many stored values apart are read in one request with the values
# between them: one read of a few extra KB costs less than another h5py call.
SPAN_GAP_VALUES = 4096
SPAN_VALUES = 1 << 20  # the most stored values one request reads (8 MB of values and columns)
# Files with fewer rows keep their row pointers in memory (up to 4 MB); larger ones read the
# pointers of the wanted rows with each request, so memory does not grow with the file.
ROW_STARTS_IN_MEMORY = 1 << 19


def check_count_dtype(dtype: np.dtype) -> None:
    """Counts are stored as integers, floats or booleans; anything else is refused by name."""
    if not any(np.issubdtype(dtype, kind) for kind in (np.integer, np.floating, np.bool_)):
        raise DataError(f"counts have dtype {dtype}; real-valued raw counts are required")


def check_source_counts(matrix, where: str, first_row: int = 0) -> None:
    """Counts checked in their stored precision, before the cast to float32 rounds them: a
    fraction float32 cannot see (1 + 1e-9) or a count of 2^24 or more is refused by cell
    (`first_row` is the row number of the matrix's first row in the file)."""
    if sp.issparse(matrix):
        matrix = sp.csr_matrix(matrix)  # no copy when it is CSR already
    values = matrix.data if sp.issparse(matrix) else np.asarray(matrix)
    if np.issubdtype(values.dtype, np.floating) and values.dtype.itemsize > 4:
        finite = np.isfinite(values)  # NaN and inf get their own message later
        bad = finite & (values != np.round(values))
        if bad.any():
            raise DataError(_non_integer(where, first_row + _first_row(matrix, bad)))
    if np.issubdtype(values.dtype, np.number) and values.size:
        bad = np.isfinite(values) & (values >= FLOAT32_EXACT_LIMIT)
        if bad.any():
            raise DataError(_too_large(where, first_row + _first_row(matrix, bad)))


def _non_integer(where: str, row: int) -> str:
    return (
        f"{where} has non-integer counts (cell {row}): raw UMI counts are required, "
        "not normalised or log values"
    )


def _too_large(where: str, row: int) -> str:
    return (
        f"{where} has a count of {FLOAT32_EXACT_LIMIT:,} or more (cell {row}), which float32 "
        "cannot hold exactly; raw UMI counts per gene and cell are far smaller"
    )


def _first_row(matrix, bad: np.ndarray) -> int:
    """Row of the first True of `bad`, a mask over a CSR matrix's data or a dense array."""
    if sp.issparse(matrix):
        return _row_of(matrix, bad, 0)
    return int(np.argwhere(bad)[0][0])


def _spans(start: np.ndarray, stop: np.ndarray) -> list[tuple[int, int]]:
    """[first, last) runs of rows read in one request each: rows whose stored values lie less
    than SPAN_GAP_VALUES apart, each run spanning at most SPAN_VALUES values, so the values read
    and not needed stay bounded."""
    gap = np.flatnonzero(start[1:] - stop[:-1] > SPAN_GAP_VALUES) + 1
    run = np.zeros(len(start), dtype=np.int64)
    run[gap] = 1
    run = np.cumsum(run)
    run_lo = start[np.concatenate([[0], gap])]
    piece = (start - run_lo[run]) // SPAN_VALUES
    new = np.flatnonzero((run[1:] != run[:-1]) | (piece[1:] != piece[:-1])) + 1
    bounds = np.concatenate([[0], new, [len(start)]])
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))


class InMemoryCounts:
    """Counts as a CSR matrix (float32) in host memory."""

    def __init__(self, matrix: sp.csr_matrix):
        self.matrix = matrix
        self.shape = matrix.shape

    def rows(self, index: np.ndarray) -> sp.csr_matrix:
        """Rows `index` (any order, repeats allowed), in that order."""
        return self.matrix[index]

    def stored_values_total(self) -> int:
        return int(self.matrix.nnz)

    def blocks(self, block_size: int = ROW_BLOCK) -> Iterator[tuple[int, sp.csr_matrix]]:
        for start in range(0, self.shape[0], block_size):
            yield start, self.matrix[start : start + block_size]


class _Stored:
    """A dataset read by value ranges: with `os.pread` where its values have fixed file offsets
    (data/direct_reads.py), through h5py otherwise."""

    def __init__(self, dataset: h5py.Dataset, descriptor: int):
        self.dataset = dataset
        self._direct = DirectDataset.of(dataset, descriptor)

    @property
    def direct(self) -> bool:
        return self._direct is not None

    def span(self, lo: int, hi: int) -> np.ndarray:
        if self._direct is None:
            return self.dataset[lo:hi]
        return self._direct.read(lo, hi)

    def pairs(self, sorted_unique: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(values at sorted_unique, values at sorted_unique + 1), as int64."""
        if self._direct is None:
            return (
                self.dataset[sorted_unique].astype(np.int64),
                self.dataset[sorted_unique + 1].astype(np.int64),
            )
        both = self._direct.gather(sorted_unique, sorted_unique + 2).astype(np.int64)
        return both[0::2], both[1::2]

    def gather(self, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
        """The ranges starts[i]…stops[i]-1 concatenated; only for a `direct` dataset (through
        h5py, merged spans cost less than one request per range)."""
        return self._direct.gather(starts, stops)

    def rows(self, sorted_unique: np.ndarray, width: int) -> np.ndarray:
        """Rows sorted_unique of a 2-D dataset of `width` columns."""
        if self._direct is None:
            return self.dataset[sorted_unique]
        starts = np.asarray(sorted_unique, dtype=np.int64) * width
        return self._direct.gather(starts, starts + width).reshape(len(sorted_unique), width)


class BackedCounts:
    """Counts read from an .h5ad on disk (CSR or dense), a few rows at a time.

    Rows of a CSR file are read from its HDF5 datasets directly (anndata's row indexing costs
    about 3x more per row), with `os.pread` where the datasets are stored unfiltered: the
    wanted rows' pointers, then their stored values in as few requests as there are separate
    runs of rows. The row pointers of files up to ROW_STARTS_IN_MEMORY rows are read once and
    kept; larger files read the wanted ones per request, so memory does not grow with the file.
    """

    def __init__(self, path: Path, key: str):
        self.path, self.key = Path(path), key
        self._file = h5py.File(self.path, "r")
        self._descriptor = os.open(self.path, os.O_RDONLY)
        node = self._file[key]
        if isinstance(node, h5py.Dataset):
            self._dense, self._sparse = node, None
            self._dense_values = _Stored(node, self._descriptor)
            self.shape = tuple(node.shape)
        else:
            if node.attrs.get("encoding-type") != "csr_matrix":
                raise DataError(
                    f"{self.path}: {key} is stored as {node.attrs.get('encoding-type')}; backed "
                    "reading needs CSR (rows = cells) or dense counts"
                )
            self._dense, self._sparse = None, ad.io.sparse_dataset(node)
            self.shape = tuple(self._sparse.shape)
            self._values = _Stored(node["data"], self._descriptor)
            self._columns = _Stored(node["indices"], self._descriptor)
            self._row_pointers = _Stored(node["indptr"], self._descriptor)
            self._row_start = None
            if self.shape[0] < ROW_STARTS_IN_MEMORY:
                self._row_start = node["indptr"][:].astype(np.int64)
        check_count_dtype((self._dense if self._sparse is None else node["data"]).dtype)

    def _read_sorted(self, sorted_unique: np.ndarray) -> sp.csr_matrix:
        if self._sparse is None:
            return sp.csr_matrix(self._dense_rows(sorted_unique).astype(np.float32))
        start, stop = self._bounds(sorted_unique)
        row_ptr = np.zeros(len(sorted_unique) + 1, dtype=np.int64)
        np.cumsum(stop - start, out=row_ptr[1:])
        shape = (len(sorted_unique), self.shape[1])
        if self.reads_directly:  # one read per row: no span bookkeeping to pay for
            values = self._values.gather(start, stop).astype(np.float32, copy=False)
            return sp.csr_matrix((values, self._columns.gather(start, stop), row_ptr), shape=shape)
        values, columns = [], []
        for first, last in _spans(start, stop):
            lo, hi = start[first], stop[last - 1]
            lengths = stop[first:last] - start[first:last]
            span_ptr = np.concatenate([[0], np.cumsum(lengths)])
            take = np.repeat(start[first:last] - lo - span_ptr[:-1], lengths) + np.arange(
                span_ptr[-1]
            )
            values.append(self._values.span(lo, hi).astype(np.float32, copy=False)[take])
            columns.append(self._columns.span(lo, hi)[take])
        return sp.csr_matrix(
            (np.concatenate(values), np.concatenate(columns), row_ptr), shape=shape
        )

    def rows_in_file_order(
        self, sorted_rows: np.ndarray
    ) -> Iterator[tuple[np.ndarray, sp.csr_matrix]]:
        """The rows `sorted_rows` (increasing, no repeats) in blocks of (their row numbers, their
        counts as float32 CSR), read in one sequential pass over the file. Rows scattered
        through a large file (a pool's cells among all the others) cost one request each when
        read by `rows`; here they cost a share of a block read."""
        n_rows = self.shape[0]
        for first in range(0, n_rows, ROW_BLOCK):
            lo, hi = np.searchsorted(sorted_rows, [first, min(first + ROW_BLOCK, n_rows)])
            if lo < hi:
                wanted = np.asarray(sorted_rows[lo:hi], dtype=np.int64)
                yield wanted, self._block_rows(first, wanted - first)

    def _block_rows(self, first: int, local: np.ndarray) -> sp.csr_matrix:
        """Rows first + local (increasing) from one read of the stored values they span."""
        last = first + int(local[-1]) + 1
        if self._sparse is None:
            return sp.csr_matrix(self._dense[first:last][local].astype(np.float32))
        pointers = self._row_pointers.span(first, last + 1).astype(np.int64)
        start, stop = pointers[local], pointers[local + 1]
        lengths = stop - start
        row_ptr = np.zeros(len(local) + 1, dtype=np.int64)
        np.cumsum(lengths, out=row_ptr[1:])
        take = np.repeat(start - start[0] - row_ptr[:-1], lengths) + np.arange(row_ptr[-1])
        span = slice(int(start[0]), int(stop[-1]))
        values = self._values.span(span.start, span.stop).astype(np.float32, copy=False)[take]
        columns = self._columns.span(span.start, span.stop)[take]
        return sp.csr_matrix((values, columns, row_ptr), shape=(len(local), self.shape[1]))

    def _bounds(self, sorted_unique: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where the stored values of the rows `sorted_unique` start and stop."""
        if self._row_start is not None:
            return self._row_start[sorted_unique], self._row_start[sorted_unique + 1]
        return self._row_pointers.pairs(sorted_unique)

    def _dense_rows(self, sorted_unique: np.ndarray) -> np.ndarray:
        return self._dense_values.rows(sorted_unique, self.shape[1])

    def _checked_block(self, start: int, stop: int) -> sp.csr_matrix:
        """Rows start…stop as float32 CSR, checked first in the stored precision."""
        native = self._sparse[start:stop] if self._sparse is not None else self._dense[start:stop]
        check_source_counts(native, "counts (X)", first_row=start)
        return sp.csr_matrix(native, dtype=np.float32)

    @property
    def reads_directly(self) -> bool:
        """Whether rows are read with `os.pread` (unfiltered storage) rather than h5py."""
        if self._sparse is None:
            return self._dense_values.direct
        return self._values.direct and self._columns.direct

    def stored_values_total(self) -> int:
        if self._sparse is None:
            return self.shape[0] * self.shape[1]
        return int(self._row_pointers.span(self.shape[0], self.shape[0] + 1)[0])

    def rows(self, index: np.ndarray) -> sp.csr_matrix:
        """Rows `index` (any order, repeats allowed), in that order; one sorted read from disk."""
        index = np.asarray(index, dtype=np.int64)
        if len(index) == 0:
            return sp.csr_matrix((0, self.shape[1]), dtype=np.float32)
        unique, inverse = np.unique(index, return_inverse=True)
        return self._read_sorted(unique)[inverse]

    def blocks(self, block_size: int = ROW_BLOCK) -> Iterator[tuple[int, sp.csr_matrix]]:
        for start in range(0, self.shape[0], block_size):
            yield start, self._checked_block(start, min(start + block_size, self.shape[0]))

    def close(self) -> None:
        self._file.close()
        if self._descriptor >= 0:
            os.close(self._descriptor)
            self._descriptor = -1


CountSource = InMemoryCounts | BackedCounts


def check_counts(source: CountSource, where: str) -> np.ndarray:
    """Validate raw counts block by block; return the library sizes ℓ (N,) float64.

    Counts must be finite, non-negative integers. Raises DataError naming the first bad cell.
    """
    n_cells, n_genes = source.shape
    if n_cells == 0 or n_genes == 0:
        raise DataError(f"{where} is empty: {n_cells} cells x {n_genes} genes")
    library = np.zeros(n_cells, dtype=np.float64)
    for start, block in source.blocks():
        values = block.data
        bad = ~np.isfinite(values)
        if bad.any():
            raise DataError(
                f"{where} has NaN or infinite counts (cell {_row_of(block, bad, start)}); "
                "if the file should hold raw counts, it may be damaged"
            )
        bad = values < 0
        if bad.any():
            raise DataError(f"{where} has negative counts (cell {_row_of(block, bad, start)})")
        bad = values != np.round(values)
        if bad.any():
            raise DataError(_non_integer(where, _row_of(block, bad, start)))
        bad = values >= FLOAT32_EXACT_LIMIT
        if bad.any():
            raise DataError(_too_large(where, _row_of(block, bad, start)))
        library[start : start + block.shape[0]] = np.asarray(block.sum(axis=1)).ravel()
    return library


def _row_of(block: sp.csr_matrix, bad_entries: np.ndarray, start: int) -> int:
    first = int(np.flatnonzero(bad_entries)[0])
    return start + int(np.searchsorted(block.indptr, first, side="right") - 1)
