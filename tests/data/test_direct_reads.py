"""Positional reads of HDF5 datasets against h5py's own reads, and the layouts they refuse."""

import os

import anndata as ad
import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from cradle_jax.data.counts import BackedCounts
from cradle_jax.data.direct_reads import DirectDataset

VALUES = np.arange(1000, dtype=">f4") * 1.5  # big-endian on purpose: the stored dtype is kept


@pytest.fixture
def h5(tmp_path):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("contiguous", data=VALUES)
        f.create_dataset("chunked", data=VALUES, chunks=(64,))
        f.create_dataset("gzip", data=VALUES, chunks=(64,), compression="gzip")
        f.create_dataset("unwritten", shape=(1000,), dtype="f4", chunks=(64,))
        f.create_dataset("matrix", data=VALUES.reshape(100, 10))
        f.create_dataset("chunked_matrix", data=VALUES.reshape(100, 10), chunks=(10, 10))
    descriptor = os.open(path, os.O_RDONLY)
    with h5py.File(path, "r") as f:
        yield f, descriptor
    os.close(descriptor)


@pytest.mark.parametrize("name", ["contiguous", "chunked", "matrix"])
def test_ranges_read_directly_equal_h5py_reads(h5, name):
    f, descriptor = h5
    direct = DirectDataset.of(f[name], descriptor)
    assert direct is not None
    flat = f[name][...].ravel()
    for lo, hi in [(0, 1), (0, 1000), (63, 65), (64, 128), (5, 900), (999, 1000), (10, 10)]:
        read = direct.read(lo, hi)
        assert read.dtype == flat.dtype
        np.testing.assert_array_equal(read, flat[lo:hi])


@pytest.mark.parametrize("name", ["gzip", "unwritten", "chunked_matrix"])
def test_layouts_without_fixed_offsets_are_left_to_h5py(h5, name):
    f, descriptor = h5
    assert DirectDataset.of(f[name], descriptor) is None


@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize("dense", [False, True])
def test_backed_rows_are_the_same_read_directly_or_through_h5py(tmp_path, compression, dense):
    matrix = sp.random(200, 30, density=0.3, format="csr", random_state=3, dtype=np.float32)
    matrix.data = np.ceil(matrix.data * 9)
    adata = ad.AnnData(X=matrix.toarray() if dense else matrix)
    adata.write_h5ad(tmp_path / "m.h5ad", compression=compression)
    backed = BackedCounts(tmp_path / "m.h5ad", "X")
    assert backed.reads_directly == (compression is None)
    index = np.random.default_rng(0).choice(200, 60)
    np.testing.assert_array_equal(backed.rows(index).toarray(), matrix[index].toarray())
    assert backed.stored_values_total() == (200 * 30 if dense else matrix.nnz)
    backed.close()
