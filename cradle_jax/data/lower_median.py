"""Element-wise lower medians of sets of sparse count rows, compiled with numba.

A cell's x^cf is the lower median, gene by gene, of its k drawn reference rows
(docs/data.md#counterfactual-references). Counts are sparse: the median of a gene is non-zero
only where at least k − ⌊(k−1)/2⌋ of the draws store it, and of the ~100 genes a row stores only
a few dozen reach that. So each row also gets a bit set of the genes it stores; a cell adds its
draws' bit sets in bit-sliced counters (one machine word counts 64 genes at once), which names
the genes that reach the count, and only those genes' values are looked up and ranked.
Scattering every stored value of every draw into per-gene lists, the kernel's earlier form, took
twice the CPU time per cell, and the NumPy/SciPy form before it far more
(benchmarks/README.md#backed-files). numba comes with scanpy, so this costs no new dependency.

Exact for any non-negative values: a gene's values are ranked by counting when they are small
integers (counts almost always are), by a quickselect otherwise. Training's pass over every cell
(`pool_median_rows`) also draws each cell's references inside the kernel, with the counter-based
uniforms of `ReferencePools.draw_slots`, so the draws cost no NumPy pass and run on every thread.
"""

from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import NamedTuple

import numba
import numba.experimental
import numpy as np
import scipy.sparse as sp
from llvmlite import ir
from numba.extending import intrinsic

from cradle_jax.data.references import SPLITMIX_GAMMA, SPLITMIX_MIX_1, SPLITMIX_MIX_2

SMALL_COUNT = 256  # values below this (integers) are ranked by counting
MIN_CELLS_PER_THREAD = 2_048  # fewer cells are not worth a thread
WORD_BITS = 64


class IndexedRows(NamedTuple):
    """Count rows in the kernel's form: CSR in canonical order (ascending genes, no repeats;
    `values` ends with one padding value), each row's gene bit set `bits` (rows, words), and
    `before` (rows, words), the number of the row's stored values in the words before each."""

    indptr: np.ndarray
    values: np.ndarray
    bits: np.ndarray
    before: np.ndarray
    integral: bool
    n_genes: int


def indexed_rows(rows: sp.csr_matrix) -> IndexedRows:
    """`rows` in the kernel's form; costs one pass over the stored values."""
    if not rows.has_canonical_format:
        rows = rows.copy()
        rows.sum_duplicates()
    values = np.append(rows.data.astype(np.float32, copy=False), np.float32(0))  # see _gather
    indptr = rows.indptr.astype(np.int64, copy=False)
    n_words = -(-rows.shape[1] // WORD_BITS)
    bits, before = _bit_sets(indptr, rows.indices.astype(np.int32, copy=False), n_words)
    integral = bool(np.all(values == np.floor(values)))
    return IndexedRows(indptr, values, bits, before, integral, rows.shape[1])


def index_bytes_per_row(n_genes: int) -> int:
    """Memory a row's index adds to its stored values: per 64 genes, a word of its bit set and
    an int32 count of its values before that word."""
    return -(-n_genes // WORD_BITS) * (8 + 4)


def lower_median_rows(
    position: np.ndarray, rows: sp.csr_matrix, n_genes: int, threads: int = 1
) -> sp.csr_matrix:
    """(C, G) float32 CSR: row i the element-wise lower median of `rows[position[i, :k_i]]`,
    where `position` (C, k) holds row numbers into `rows`, padded with -1 at the end (k_i = the
    row numbers before the padding; a cell with none gets an empty row)."""
    position = np.ascontiguousarray(position, dtype=np.int32)
    indexed = indexed_rows(rows)

    def run(lo: int, hi: int):
        return _position_medians(position[lo:hi], *_kernel_arrays(indexed))

    return _in_threads(len(position), threads, run, n_genes)


def pool_median_rows(
    cells: np.ndarray,
    pool_start: np.ndarray,
    pool_size: np.ndarray,
    n_samples: int,
    key: np.uint64,
    rows: IndexedRows,
    threads: int = 1,
) -> sp.csr_matrix:
    """(C, G) float32 CSR: row i the lower median of the min(pool_size[i], n_samples) rows that
    cell cells[i] draws from its pool, the rows pool_start[i] … pool_start[i] + pool_size[i] − 1
    of `rows`: draw j is row pool_start + ⌊u·pool_size⌋ with u the SplitMix64 uniform of
    counter cells[i]·n_samples + j under `key`, exactly as ReferencePools.draw_slots draws."""
    cells = np.ascontiguousarray(cells, dtype=np.int64)
    pool_start = np.ascontiguousarray(pool_start, dtype=np.int64)
    pool_size = np.ascontiguousarray(pool_size, dtype=np.int64)

    def run(lo: int, hi: int):
        return _pool_medians(
            cells[lo:hi], pool_start[lo:hi], pool_size[lo:hi], n_samples, np.uint64(key),
            *_kernel_arrays(rows),
        )  # fmt: skip

    return _in_threads(len(cells), threads, run, rows.n_genes)


def _kernel_arrays(rows: IndexedRows) -> tuple:
    """What the compiled kernels read of `rows` (all but the gene count)."""
    return rows.indptr, rows.values, rows.bits, rows.before, rows.integral


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


@intrinsic
def _popcount(typingctx, word):
    """The number of set bits of a uint64 (one instruction)."""

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return numba.uint64(numba.uint64), codegen


@intrinsic
def _trailing_zeros(typingctx, word):
    """The index of the lowest set bit of a non-zero uint64 (one instruction)."""

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return numba.uint64(numba.uint64), codegen


@numba.njit(nogil=True, cache=True)
def _bit_sets(indptr, indices, n_words):
    """Each row's gene bit set, and its stored values before each word."""
    n_rows = len(indptr) - 1
    bits = np.zeros((n_rows, n_words), dtype=np.uint64)
    before = np.zeros((n_rows, n_words), dtype=np.int32)
    for row in range(n_rows):
        for p in range(indptr[row], indptr[row + 1]):
            gene = indices[p]
            bits[row, gene >> 6] |= np.uint64(1) << np.uint64(gene & 63)
        total = 0
        for word in range(n_words):
            before[row, word] = total
            total += np.int32(_popcount(bits[row, word]))
    return bits, before


@numba.njit(nogil=True, cache=True)
def _position_medians(position, indptr, values, bits, before, integral):
    """(genes found per cell, genes, medians) of the cells whose draws `position` lists."""
    out = _Output(len(position))
    work = _work(bits.shape[1], position.shape[1])
    for i in range(len(position)):
        k = 0
        while k < position.shape[1] and position[i, k] >= 0:
            k += 1
        out.make_room(bits.shape[1] * WORD_BITS)
        out.found[i] = _cell_medians(
            position[i, :k], indptr, values, bits, before, integral, work, out.genes,
            out.medians, out.size,
        )  # fmt: skip
        out.size += out.found[i]
    return out.result()


@numba.njit(nogil=True, cache=True)
def _pool_medians(
    cells, pool_start, pool_size, n_samples, key, indptr, values, bits, before, integral
):
    """(genes found per cell, genes, medians) of `cells`, each drawing from its pool."""
    out = _Output(len(cells))
    work = _work(bits.shape[1], n_samples)
    draws = np.empty(n_samples, dtype=np.int64)
    for i in range(len(cells)):
        k = min(pool_size[i], n_samples)
        for j in range(k):
            u = _uniform(key, np.uint64(cells[i]) * np.uint64(n_samples) + np.uint64(j))
            draws[j] = pool_start[i] + np.int64(u * pool_size[i])
        out.make_room(bits.shape[1] * WORD_BITS)
        out.found[i] = _cell_medians(
            draws[:k], indptr, values, bits, before, integral, work, out.genes, out.medians,
            out.size,
        )  # fmt: skip
        out.size += out.found[i]
    return out.result()


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
        ("found", numba.int64[:]),
        ("genes", numba.int32[:]),
        ("medians", numba.float32[:]),
        ("size", numba.int64),
    ]
)
class _Output:
    """One thread's growing (genes found per cell, genes, medians)."""

    def __init__(self, n_cells):
        self.found = np.zeros(n_cells, dtype=np.int64)
        self.genes = np.empty(64 * n_cells + 64, dtype=np.int32)
        self.medians = np.empty(64 * n_cells + 64, dtype=np.float32)
        self.size = 0

    def make_room(self, n):
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
def _work(n_words, width):
    """One thread's bit-sliced counters (enough bits to count to `width`), their carries, a
    gene's values and a histogram."""
    n_planes = 1
    while (1 << n_planes) <= width:
        n_planes += 1
    planes = np.zeros((n_planes, n_words), dtype=np.uint64)
    carry = np.zeros(n_words, dtype=np.uint64)
    stored = np.empty(width + 1, dtype=np.float32)  # + 1: see _gather
    return planes, carry, stored, np.zeros(SMALL_COUNT + 1, dtype=np.int32)


@numba.njit(nogil=True, cache=True)
def _cell_medians(draws, indptr, values, bits, before, integral, work, genes, medians, size):
    """Write, from genes[size] and medians[size] on, the lower median of rows `draws` at every
    gene (ascending) that enough of them store; returns how many."""
    planes, carry, stored, histogram = work
    k = len(draws)
    lower = (k - 1) // 2
    _count_draws(draws, bits, planes, carry)
    out = size
    for word in range(bits.shape[1]):
        reached = _reached(planes, word, k - lower)
        while reached:
            bit = reached & (~reached + np.uint64(1))
            n_stored = _gather(draws, indptr, values, bits, before, word, bit, stored)
            genes[out] = word * WORD_BITS + np.int64(_trailing_zeros(bit))
            medians[out] = _order_statistic(
                stored, n_stored, lower - (k - n_stored), integral, histogram
            )
            out += 1
            reached ^= bit
    return out - size


@numba.njit(nogil=True, cache=True, inline="always")
def _count_draws(draws, bits, planes, carry):
    """planes[b] = bit b of each gene's count of draws storing it (a bit-sliced ripple adder)."""
    planes[:] = 0
    for row in draws:
        carry[:] = bits[row]
        for plane in range(planes.shape[0]):
            for word in range(len(carry)):
                sum_bit = planes[plane, word]
                planes[plane, word] = sum_bit ^ carry[word]
                carry[word] = sum_bit & carry[word]


@numba.njit(nogil=True, cache=True, inline="always")
def _reached(planes, word, need):
    """The bits of `word`'s genes whose count in `planes` is at least `need`."""
    greater = np.uint64(0)
    equal = ~np.uint64(0)
    for plane in range(planes.shape[0] - 1, -1, -1):
        count_bit = planes[plane, word]
        if (need >> plane) & 1:
            equal &= count_bit
        else:
            greater |= equal & count_bit
            equal &= ~count_bit
    return greater | equal


@numba.njit(nogil=True, cache=True, inline="always")
def _gather(draws, indptr, values, bits, before, word, bit, stored):
    """The values of gene `bit` of `word` in the draws that store it, into stored; returns how
    many. Without a branch (whether a draw stores a gene is a coin flip to the predictor): every
    draw writes where its value would go, which the next draw overwrites if it was not one; so a
    row that stores nothing after the gene reads the next row's first value, or at the last row
    one past the values (a padding value), and `stored` has room for one write more than draws.
    """
    lower_bits = bit - np.uint64(1)
    n = 0
    for row in draws:
        row_bits = bits[row, word]
        offset = before[row, word] + np.int64(_popcount(row_bits & lower_bits))
        stored[n] = values[indptr[row] + offset]
        n += np.int64((row_bits & bit) != 0)
    return n


@numba.njit(nogil=True, cache=True, inline="always")
def _order_statistic(stored, n, rank, integral, histogram):
    """The rank-th smallest (0-based) of stored[:n]; reorders it."""
    if not integral:
        return _quickselect(stored, n, rank)
    largest = 0
    for a in range(n):
        value = np.int32(min(stored[a], SMALL_COUNT))
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
        return _quickselect(stored, n, rank)
    return result


@numba.njit(nogil=True, cache=True, inline="always")
def _quickselect(stored, n, rank):
    """Hoare's selection on stored[:n]: partition around a middle pivot, keep the side
    holding `rank`."""
    lo, hi = 0, n - 1
    while lo < hi:
        pivot = stored[(lo + hi) >> 1]
        i, j = lo, hi
        while i <= j:
            while stored[i] < pivot:
                i += 1
            while stored[j] > pivot:
                j -= 1
            if i <= j:
                stored[i], stored[j] = stored[j], stored[i]
                i += 1
                j -= 1
        if rank <= j:
            hi = j
        elif rank >= i:
            lo = i
        else:
            return pivot
    return stored[rank]
