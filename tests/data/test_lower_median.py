"""The compiled lower median against NumPy's sort, on every path it takes."""

import numpy as np
import pytest
import scipy.sparse as sp

from cradle_jax.data import lower_median
from cradle_jax.data.lower_median import lower_median_rows


def _expected(position: np.ndarray, dense: np.ndarray) -> np.ndarray:
    out = np.zeros((len(position), dense.shape[1]), dtype=np.float32)
    for i, row in enumerate(position):
        drawn = row[row >= 0]
        if len(drawn):
            out[i] = np.sort(dense[drawn], axis=0)[(len(drawn) - 1) // 2]
    return out


def _case(seed: int, values: str, n_rows: int = 40, n_genes: int = 30, width: int = 9):
    rng = np.random.default_rng(seed)
    present = rng.random((n_rows, n_genes)) < rng.uniform(0.1, 0.9, n_genes)  # boundary genes
    magnitude = {
        "small counts": rng.integers(1, 12, (n_rows, n_genes)),
        "large counts": rng.integers(200, 100_000, (n_rows, n_genes)),
        "fractions": rng.uniform(0.01, 3.0, (n_rows, n_genes)),
        "mixed": np.where(rng.random((n_rows, n_genes)) < 0.2, 300.0, rng.integers(1, 5, 1)),
    }[values]
    dense = np.where(present, magnitude, 0).astype(np.float32)
    position = np.full((25, width), -1, dtype=np.int32)
    for i in range(24):  # the last cell draws nothing
        k = rng.integers(1, width + 1)
        position[i, :k] = rng.integers(0, n_rows, k)  # repeats allowed, as draws are
    return position, dense


@pytest.mark.parametrize("values", ["small counts", "large counts", "fractions", "mixed"])
@pytest.mark.parametrize("seed", range(4))
def test_lower_median_rows_equal_the_sorted_middle(values, seed):
    position, dense = _case(seed, values)
    out = lower_median_rows(position, sp.csr_matrix(dense), dense.shape[1])
    assert out.has_canonical_format
    np.testing.assert_array_equal(out.toarray(), _expected(position, dense))
    assert out[24].nnz == 0


def test_threads_give_the_same_rows(monkeypatch):
    monkeypatch.setattr(lower_median, "MIN_CELLS_PER_THREAD", 3)
    position, dense = _case(7, "small counts")
    one = lower_median_rows(position, sp.csr_matrix(dense), dense.shape[1], threads=1)
    four = lower_median_rows(position, sp.csr_matrix(dense), dense.shape[1], threads=4)
    assert lower_median._thread_count(len(position), 4) == 4
    np.testing.assert_array_equal(four.toarray(), one.toarray())
    np.testing.assert_array_equal(four.toarray(), _expected(position, dense))


def test_no_cells_and_no_rows():
    empty = lower_median_rows(np.zeros((0, 5), np.int32), sp.csr_matrix((3, 4)), 4)
    assert empty.shape == (0, 4)
    undrawn = lower_median_rows(np.full((2, 5), -1, np.int32), sp.csr_matrix((0, 4)), 4)
    assert undrawn.shape == (2, 4)
    assert undrawn.nnz == 0


@pytest.mark.parametrize("width", [1, 2, 63, 64, 70])
def test_genes_across_words_and_counts_past_a_power_of_two(width):
    """Genes on both sides of each 64-gene word boundary; up to 70 draws (seven counter bits)."""
    position, dense = _case(width, "small counts", n_rows=90, n_genes=200, width=width)
    out = lower_median_rows(position, sp.csr_matrix(dense), dense.shape[1])
    np.testing.assert_array_equal(out.toarray(), _expected(position, dense))


def test_unsorted_repeated_and_explicitly_zero_entries_count_as_their_dense_row():
    position, dense = _case(11, "small counts", n_rows=40, n_genes=130)
    canonical = sp.csr_matrix(dense)
    rng = np.random.default_rng(0)
    indptr, indices, data = [0], [], []
    for row in range(canonical.shape[0]):
        genes = canonical.indices[canonical.indptr[row] : canonical.indptr[row + 1]]
        values = canonical.data[canonical.indptr[row] : canonical.indptr[row + 1]]
        split = np.minimum(values, rng.integers(0, 3, len(values)))  # one value as two entries
        zero = rng.integers(0, 130, 2)  # stored zeros at absent or present genes
        genes = np.concatenate([genes, genes, zero])
        values = np.concatenate([values - split, split, np.zeros(2, np.float32)])
        order = rng.permutation(len(genes))
        indices.extend(genes[order])
        data.extend(values[order])
        indptr.append(len(indices))
    messy = sp.csr_matrix((data, indices, indptr), shape=dense.shape)
    assert not messy.has_canonical_format
    out = lower_median_rows(position, messy, dense.shape[1])
    np.testing.assert_array_equal(out.toarray(), _expected(position, dense))
