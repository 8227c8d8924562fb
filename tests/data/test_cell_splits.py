"""cell_splits.csv and the export's split arrays: every cell's split by name, read back as
written, whatever the names."""

import numpy as np
import pytest

from cradle_jax.data.cell_splits import (
    SPLITS_NAME,
    CellSplits,
    cell_splits_of,
    read_cell_splits,
    write_cell_splits,
)
from cradle_jax.data.errors import DataError
from cradle_jax.data.splits import TEST, TRAIN, UNUSED, VAL
from tests.conftest import make_adata

ODD_NAMES = np.array(["cell0", "NA", "a,b", 'say "hi"', "细胞", "  padded "])
CODES = np.array([TRAIN, VAL, TEST, UNUSED, TRAIN, TEST], dtype=np.int8)
EXPECTED = ["train", "val", "test", "unused", "train", "test"]


def test_the_csv_reads_back_every_name_and_split(tmp_path):
    path = write_cell_splits(CellSplits(ODD_NAMES, CODES), tmp_path)
    assert path == tmp_path / SPLITS_NAME
    assert path.read_text().splitlines()[:2] == ["cell,split", "cell0,train"]
    splits = read_cell_splits(path)
    assert splits.index.tolist() == ODD_NAMES.tolist()
    assert splits.tolist() == EXPECTED
    assert [p.name for p in tmp_path.iterdir()] == [SPLITS_NAME]  # no temporary left


def test_the_export_arrays_hold_no_objects_and_read_back(tmp_path):
    arrays = CellSplits(ODD_NAMES, CODES).arrays()
    assert all(array.dtype != object for array in arrays.values())
    np.savez(tmp_path / "x.npz", **arrays)
    with np.load(tmp_path / "x.npz", allow_pickle=False) as stored:
        back = CellSplits.from_arrays({name: stored[name] for name in stored.files})
    assert back.names.tolist() == ODD_NAMES.tolist()
    assert back.codes.tolist() == CODES.tolist()
    assert CellSplits.from_arrays({}) is None


def test_names_come_from_the_data_file(tmp_path):
    adata = make_adata(["non-targeting", "A", "B"] * 2)
    adata.write_h5ad(tmp_path / "d.h5ad")
    splits = cell_splits_of(tmp_path / "d.h5ad", CODES)
    table = splits.table()
    assert table["cell"].tolist() == adata.obs_names.tolist()
    assert table["split"].tolist() == EXPECTED
    with pytest.raises(DataError, match="has 6 cells, the loaded data 5"):
        cell_splits_of(tmp_path / "d.h5ad", CODES[:5])
