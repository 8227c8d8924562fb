"""An .h5ad opened for backed training: counts on disk, obs read one column at a time.

anndata's backed mode keeps only X on disk; it reads the whole obs table, every cell name and
every column, into memory first. At a million cells that is more memory than everything training
keeps per cell, so a backed load reads the file's obs columns itself, one at a time, and the
cell names only in blocks (to check them for duplicates and to compute QC metrics).
"""

from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd

from cradle_jax.data.counts import BackedCounts
from cradle_jax.data.errors import DataError

NAME_BLOCK = 16_384  # cell names hashed per read when checking for duplicates


class LazyObs:
    """The obs table of an open .h5ad, with the DataFrame interface the loader uses (`columns`,
    `obs[name]`, `len`, `index`), each column read from disk when asked for."""

    def __init__(self, group: h5py.Group):
        self._group = group
        self._index_key = group.attrs["_index"]
        self.columns = pd.Index([str(c) for c in group.attrs.get("column-order", [])])
        self._n = len(group[self._index_key])

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, name: str) -> pd.Series:
        if name not in self.columns:
            raise KeyError(name)
        return pd.Series(ad.io.read_elem(self._group[name]), name=name)

    @property
    def index(self) -> pd.RangeIndex:
        """Row numbers: the names stay on disk, and errors name cells by row, as the count
        checks do."""
        return pd.RangeIndex(self._n)

    def names(self, rows: slice) -> np.ndarray:
        """The cell names of a contiguous block of rows."""
        return self._group[self._index_key].asstr()[rows]

    def duplicated_names(self) -> pd.Index:
        """Names held by more than one cell, found by hashing blocks of names."""
        hashes = np.concatenate(
            [
                np.zeros(0, dtype=np.uint64),
                *(
                    pd.util.hash_array(self.names(slice(start, start + NAME_BLOCK)).astype(object))
                    for start in range(0, self._n, NAME_BLOCK)
                ),
            ]
        )
        ordered = np.sort(hashes)  # sorting keeps memory at two hash arrays; a hash table would not
        suspects = np.flatnonzero(np.isin(hashes, ordered[1:][ordered[1:] == ordered[:-1]]))
        if not len(suspects):
            return pd.Index([])
        names = pd.Index([self.names(slice(i, i + 1))[0] for i in suspects])
        return names[names.duplicated()]


class BackedH5ad:
    """The parts of a backed .h5ad the loader reads: counts (X), var names, layer names and lazy
    obs; open until `close` (or the end of a `with` block)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as err:
            raise DataError(f"{path} is damaged or not AnnData: {err}".splitlines()[0]) from err
        try:
            for key in ("obs", "var"):
                if key not in self._file:
                    raise DataError(f"{self.path} could not be read as AnnData: it has no {key!r}")
            if "X" not in self._file:
                raise DataError(
                    f"{self.path}: the AnnData has no X matrix, and backed reading takes the "
                    "counts from X"
                )
            self.obs = LazyObs(self._file["obs"])
            var = self._file["var"]
            self.var_names = pd.Index(ad.io.read_elem(var[var.attrs["_index"]]))
            self.layers = tuple(self._file["layers"]) if "layers" in self._file else ()
            self.obs_names = _BlockNames(self.obs)
        except Exception as err:  # h5py and anndata raise many types for damaged files
            self._file.close()
            if isinstance(err, DataError):
                raise
            raise DataError(f"{path} is damaged or not AnnData: {err}".splitlines()[0]) from err

    def counts(self) -> BackedCounts:
        return BackedCounts(self.path, "X")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "BackedH5ad":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _BlockNames:
    """`obs_names[rows]` for the contiguous row blocks the QC metrics are computed in."""

    def __init__(self, obs: LazyObs):
        self._obs = obs

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        if len(rows) == 0:
            return np.zeros(0, dtype=object)
        block = self._obs.names(slice(int(rows.min()), int(rows.max()) + 1))
        return block[rows - rows.min()]
