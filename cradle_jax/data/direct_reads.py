"""Positional reads of uncompressed HDF5 datasets, without the HDF5 library on each request.

A backed training batch reads ~1,000 scattered rows (its cells' counts and x^cf). Through h5py
each row is one request that sets up a selection, looks up its chunk and converts types, which
costs far more than the read itself (benchmarks/README.md#backed-files). When a 1-D dataset is
stored without filters, contiguous or in chunks, the file offset of every value is known once its
chunks' addresses are, and a row is one `os.pread`. Compressed or otherwise filtered datasets
have no such offsets: they keep the h5py path.
"""

import os

import h5py
import numpy as np


class DirectDataset:
    """Reads value ranges of one unfiltered HDF5 dataset with `os.pread`: a 1-D dataset, or a
    contiguous 2-D one as its values in row-major order."""

    def __init__(self, descriptor: int, dtype: np.dtype, chunk: int, offsets: np.ndarray):
        self._descriptor, self.dtype = descriptor, np.dtype(dtype)
        self._chunk, self._offsets = chunk, offsets

    @classmethod
    def of(cls, dataset: h5py.Dataset, descriptor: int) -> "DirectDataset | None":
        """A direct reader for `dataset` through the open file `descriptor`, or None when the
        dataset's values have no fixed file offsets (filters, unallocated chunks, chunks of a
        2-D dataset)."""
        if not hasattr(os, "preadv") or dataset.ndim not in (1, 2):
            return None
        if dataset.id.get_create_plist().get_nfilters() != 0:
            return None
        if dataset.chunks is None:
            offset = dataset.id.get_offset()
            if offset is None:  # an empty dataset has no storage yet
                return None
            return cls(descriptor, dataset.dtype, max(dataset.size, 1), np.array([offset]))
        if dataset.ndim != 1:
            return None
        chunk = dataset.chunks[0]
        n_chunks = -(-len(dataset) // chunk)
        if dataset.id.get_num_chunks() != n_chunks:
            return None
        offsets = np.zeros(n_chunks, dtype=np.int64)
        for index in range(n_chunks):
            info = dataset.id.get_chunk_info(index)
            if info.filter_mask != 0:
                return None
            offsets[info.chunk_offset[0] // chunk] = info.byte_offset
        return cls(descriptor, dataset.dtype, chunk, offsets)

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Values lo…hi-1, in the dataset's dtype."""
        return self.gather(np.array([lo]), np.array([hi]))

    def gather(self, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
        """The value ranges starts[i]…stops[i]-1, concatenated, in the dataset's dtype."""
        lengths = np.asarray(stops, dtype=np.int64) - np.asarray(starts, dtype=np.int64)
        out = np.empty(int(lengths.sum()), dtype=self.dtype)
        buffer = memoryview(out.view(np.uint8))
        size, done = self.dtype.itemsize, 0
        for lo, hi in zip(np.asarray(starts).tolist(), np.asarray(stops).tolist(), strict=True):
            while lo < hi:
                number, within = divmod(lo, self._chunk)
                count = min(hi - lo, self._chunk - within)
                part = buffer[done * size : (done + count) * size]
                offset = int(self._offsets[number]) + within * size
                if os.preadv(self._descriptor, [part], offset) != len(part):
                    raise OSError(f"{len(part)} bytes at value {lo} could not be read")
                lo, done = lo + count, done + count
        return out
