"""Each cell's split by name (train, val, test or unused): `cell_splits.csv` beside the results.

The columns of the evaluate table are held out only as far as the cells behind them are
(docs/metrics.md#columns); this file says which cells those were, so a score can be checked or
recomputed elsewhere. `train` writes it atomically into the workdir once the data are open,
`evaluate` again beside its results (also for `evaluate --export`), and it travels in the export
as two arrays.
"""

from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd

from cradle_jax import atomic
from cradle_jax.data.errors import DataError
from cradle_jax.data.splits import TEST, TRAIN, UNUSED, VAL

SPLITS_NAME = "cell_splits.csv"
SPLIT_NAMES = {TRAIN: "train", VAL: "val", TEST: "test", UNUSED: "unused"}
NAMES_KEY, CODES_KEY = "reference/cell_names", "reference/cell_split"


@dataclass(frozen=True)
class CellSplits:
    """names (N,) str, the file's obs_names; codes (N,) int8 split codes (data/splits.py)."""

    names: np.ndarray
    codes: np.ndarray

    def table(self) -> pd.DataFrame:
        """One row per cell, in the file's order: `cell` and `split` (train/val/test/unused)."""
        splits = pd.Series(self.codes).map(SPLIT_NAMES)
        return pd.DataFrame({"cell": self.names, "split": splits.to_numpy()})

    def arrays(self) -> dict[str, np.ndarray]:
        """The export's arrays: names as UTF-8 bytes (no pickled objects), codes as int8."""
        names = np.char.encode(self.names.astype(str), "utf-8")
        return {NAMES_KEY: names, CODES_KEY: self.codes.astype(np.int8)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "CellSplits | None":
        """The splits stored by `arrays()`; None for an export written before them."""
        if NAMES_KEY not in arrays:
            return None
        return cls(np.char.decode(arrays[NAMES_KEY], "utf-8"), arrays[CODES_KEY])


def file_cell_names(path: str | Path) -> np.ndarray:
    """(N,) str obs_names of an .h5ad, read without its counts or its other obs columns."""
    with h5py.File(path, "r") as file:
        obs = file["obs"]
        return np.asarray(ad.io.read_elem(obs[obs.attrs["_index"]])).astype(str)


def cell_splits_of(path: str | Path, codes: np.ndarray) -> CellSplits:
    """The splits `codes` (N,) of the cells of the .h5ad at `path`, named."""
    names = file_cell_names(path)
    if len(names) != len(codes):
        raise DataError(f"{path} has {len(names)} cells, the loaded data {len(codes)}")
    return CellSplits(names, np.asarray(codes, dtype=np.int8))


def write_cell_splits(splits: CellSplits, directory: str | Path) -> Path:
    """`directory`/cell_splits.csv (columns cell, split), atomically."""
    path = Path(directory) / SPLITS_NAME
    with atomic.replacing(path) as tmp:
        splits.table().to_csv(tmp, index=False)
    return path


def read_cell_splits(path: str | Path) -> pd.Series:
    """The split name of each cell, indexed by cell name, as `write_cell_splits` wrote it (a
    cell named "NA" stays a name, not a missing value)."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    return pd.Series(table["split"].to_numpy(), index=pd.Index(table["cell"], name="cell"))
