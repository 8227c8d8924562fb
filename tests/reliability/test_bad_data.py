"""Malformed input data: one named error line, exit status 2 and no file written, from both
`inspect` and `train` (which must refuse before it creates the workdir)."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from cradle_jax.config import data_config
from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.data.errors import DataError
from tests.reliability.builders import FAST, tiny_adata, with_counts, write
from tests.reliability.harness import assert_user_error, run_cli, snapshot
from tests.train.conftest import cli_overrides


@dataclass(frozen=True)
class DataCase:
    """make(folder) writes the input there and returns the path to give as the data."""

    make: Callable[[Path], Path]
    expect: tuple[str, ...]  # fragments of the one error line
    settings: dict = field(default_factory=dict)  # `data` fields: inspect flags, --config.data.*


def h5ad(change: Callable[[ad.AnnData], ad.AnnData], **kwargs) -> Callable[[Path], Path]:
    """An input made from the tiny dataset (10 cells per label) by `change`."""
    return lambda folder: write(change(tiny_adata(10, **kwargs)), folder / "data.h5ad")


def counts_where_high(value: float, dtype=None) -> Callable[[ad.AnnData], ad.AnnData]:
    """Counts above 4 replaced by `value`, in `dtype` (default: that of X)."""

    def change(a: ad.AnnData) -> ad.AnnData:
        dense = a.X.toarray().astype(dtype or a.X.dtype)
        return with_counts(a, np.where(dense > 4, np.asarray(value, dense.dtype), dense))

    return change


def obs_column(name: str, values) -> Callable[[ad.AnnData], ad.AnnData]:
    def change(adata: ad.AnnData) -> ad.AnnData:
        adata.obs[name] = values(adata) if callable(values) else values
        return adata

    return change


def drop_obs_column(name: str) -> Callable[[ad.AnnData], ad.AnnData]:
    def change(adata: ad.AnnData) -> ad.AnnData:
        adata.obs = adata.obs.drop(columns=name)
        return adata

    return change


def relabel(old: str, new) -> Callable[[ad.AnnData], ad.AnnData]:
    return obs_column("perturbation", lambda a: a.obs["perturbation"].astype(str).replace(old, new))


def z_only_in_test(adata: ad.AnnData) -> ad.AnnData:
    """Z appears only in A+Z, and every A+Z cell is in the test split."""
    extra = tiny_adata(10, labels=("A+Z",))
    extra.obs_names = [f"z{i}" for i in range(extra.n_obs)]
    both = ad.concat([adata, extra])
    both.obs["split"] = ["train", "val"] * (adata.n_obs // 2) + ["test"] * extra.n_obs
    return both


def truncated(folder: Path) -> Path:
    good = write(tiny_adata(10), folder / "good.h5ad").read_bytes()
    (folder / "good.h5ad").unlink()
    (folder / "data.h5ad").write_bytes(good[: len(good) // 2])
    return folder / "data.h5ad"


def overwritten_middle(folder: Path) -> Path:
    """A written .h5ad with 4 KiB of seeded random bytes in the middle of the file."""
    good = bytearray(write(tiny_adata(10), folder / "good.h5ad").read_bytes())
    (folder / "good.h5ad").unlink()
    middle = len(good) // 2
    good[middle : middle + 4096] = np.random.default_rng(0).bytes(4096)
    (folder / "data.h5ad").write_bytes(bytes(good))
    return folder / "data.h5ad"


def text_file(text: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / "data.h5ad").write_text(text)
        return folder / "data.h5ad"

    return make


def hdf5_not_anndata(folder: Path) -> Path:
    with h5py.File(folder / "data.h5ad", "w") as handle:
        handle["counts"] = np.arange(6).reshape(2, 3)
    return folder / "data.h5ad"


def directory(folder: Path) -> Path:
    (folder / "data.h5ad").mkdir()
    return folder / "data.h5ad"


def counts_in_layer_only(adata: ad.AnnData) -> ad.AnnData:
    adata.layers["counts"] = adata.X.copy()
    adata.X = None
    return adata


def as_csc(adata: ad.AnnData) -> ad.AnnData:
    adata.X = sp.csc_matrix(adata.X)
    return adata


def with_counts_layer(adata: ad.AnnData) -> ad.AnnData:
    adata.layers["counts"] = adata.X.copy()
    return adata


def rename(what: str, names: Callable[[int], list[str]]) -> Callable[[ad.AnnData], ad.AnnData]:
    def change(adata: ad.AnnData) -> ad.AnnData:
        if what == "obs":
            adata.obs_names = names(adata.n_obs)
        else:
            adata.var_names = names(adata.n_vars)
        return adata

    return change


def first_cells(n: int, labels: list[str]) -> Callable[[ad.AnnData], ad.AnnData]:
    def change(adata: ad.AnnData) -> ad.AnnData:
        adata = adata[:n].copy()
        adata.obs["perturbation"] = labels
        return adata

    return change


DATA_CASES = {
    # counts
    "complex_counts": DataCase(
        h5ad(lambda a: with_counts(a, a.X.toarray().astype(np.complex64))), ("complex64",)
    ),
    "negative_counts": DataCase(h5ad(counts_where_high(-1.0)), ("negative counts",)),
    "fractional_counts": DataCase(h5ad(counts_where_high(2.5)), ("non-integer counts",)),
    "count_float32_cannot_hold": DataCase(
        h5ad(counts_where_high(2.0**25 + 1, np.float64)), ("count of 16,777,216 or more",)
    ),
    "integer_count_float32_cannot_hold": DataCase(
        h5ad(counts_where_high(2**24 + 1, np.int64)), ("count of 16,777,216 or more",)
    ),
    "fraction_below_float32_precision": DataCase(
        h5ad(counts_where_high(3 + 1e-9, np.float64)), ("non-integer counts",)
    ),
    "nan_counts": DataCase(h5ad(counts_where_high(np.nan)), ("NaN or infinite counts",)),
    "inf_counts": DataCase(h5ad(counts_where_high(np.inf)), ("NaN or infinite counts",)),
    "all_zero_counts": DataCase(
        h5ad(lambda a: with_counts(a, sp.csr_matrix(a.shape, dtype=np.float32))), ("all zero",)
    ),
    "no_genes": DataCase(h5ad(lambda a: a[:, :0].copy()), ("0 genes",)),
    "no_cells": DataCase(h5ad(lambda a: a[:0].copy()), ("0 cells",)),
    "counts_in_missing_layer": DataCase(
        h5ad(lambda a: a), ("layer 'counts' not found",), {"layer": "counts"}
    ),
    "no_x_matrix": DataCase(h5ad(counts_in_layer_only), ("no X matrix",)),
    "backed_csc_matrix": DataCase(h5ad(as_csc), ("csc_matrix",), {"backed": True}),
    "backed_counts_in_a_layer": DataCase(
        h5ad(with_counts_layer), ("backed reading",), {"backed": True, "layer": "counts"}
    ),
    # names
    "duplicate_cell_names": DataCase(
        h5ad(rename("obs", lambda n: ["cell"] * n)), ("duplicate cell names", "'cell' ×")
    ),
    "duplicate_gene_names": DataCase(
        h5ad(rename("var", lambda n: ["MT-CO1", *[f"G{i % 3}" for i in range(n - 1)]])),
        ("duplicate gene names", "3 names occur more than once", "'G0' ×"),
    ),
    # perturbation labels
    "nan_perturbation": DataCase(h5ad(relabel("A", None)), ("missing values (NaN)",)),
    "no_perturbation_column": DataCase(
        h5ad(drop_obs_column("perturbation")),
        ("perturbation column 'perturbation' not in obs",),
    ),
    "unknown_control_label": DataCase(
        h5ad(lambda a: a), ("control label 'ctrl' not found",), {"control_label": "ctrl"}
    ),
    "only_control_cells": DataCase(
        h5ad(obs_column("perturbation", "non-targeting")), ("only control cells",)
    ),
    "empty_label_member": DataCase(h5ad(relabel("A", "A+")), ("empty name around '+'",)),
    "repeated_label_member": DataCase(h5ad(relabel("B", "B+B")), ("same perturbation twice",)),
    "empty_separator": DataCase(h5ad(lambda a: a), ("separator is empty",), {"separator": ""}),
    "single_only_in_held_out_combination": DataCase(
        h5ad(z_only_in_test),
        ("perturbation 'Z' has no cells in the training split",),
        {"split": "column"},
    ),
    "single_cell": DataCase(h5ad(first_cells(1, ["A"])), ("control label",)),
    "two_cells": DataCase(
        h5ad(first_cells(2, ["non-targeting", "A"])), ("the train split has no cells",)
    ),
    # QC metrics from obs
    "nan_qc_metric": DataCase(
        h5ad(
            obs_column(
                "pct_counts_mt", lambda a: a.obs["pct_counts_mt"].mask(a.obs_names == "cell3")
            )
        ),
        ("pct_counts_mt", "missing or infinite"),
    ),
    "text_qc_metric": DataCase(
        h5ad(obs_column("pct_counts_mt", "high")), ("'pct_counts_mt' must be numeric",)
    ),
    "non_boolean_doublet_call": DataCase(
        h5ad(obs_column("predicted_doublet", "maybe")), ("'predicted_doublet' must be boolean",)
    ),
    "negative_qc_threshold": DataCase(
        h5ad(lambda a: a), ("data.qc_threshold", ">= 0"), {"qc_threshold": -3}
    ),
    # splits
    "combinations_split_without_pairs": DataCase(
        h5ad(relabel("A+B", "B")), ("at least 2 distinct combinations",), {"split": "combinations"}
    ),
    "missing_split_column": DataCase(
        h5ad(lambda a: a), ("split column 'split' not in obs",), {"split": "column"}
    ),
    "unknown_split_values": DataCase(
        h5ad(obs_column("split", "training")), ("expected train/val/test",), {"split": "column"}
    ),
    "empty_validation_split": DataCase(
        h5ad(obs_column("split", "train")), ("the val split has no cells",), {"split": "column"}
    ),
    # files
    "truncated_h5ad": DataCase(truncated, ("damaged", "truncated")),
    "random_bytes_mid_file": DataCase(overwritten_middle, ("damaged",)),
    "text_file": DataCase(text_file("cell,gene\n1,2\n"), ("is not an HDF5",)),
    "empty_file": DataCase(text_file(""), ("is not an HDF5",)),
    "hdf5_but_not_anndata": DataCase(hdf5_not_anndata, ("not AnnData (.h5ad)", "counts")),
    "directory_as_data": DataCase(directory, ("is a directory",)),
    "missing_file": DataCase(lambda folder: folder / "data.h5ad", ("does not exist",)),
}


def command_line(command: str, path: Path, settings: dict, workdir: Path) -> list[str]:
    """`inspect --data PATH --FIELD=V` or `train --config.data.path=PATH --config.data.FIELD=V`."""
    if command == "inspect":
        flags = [f"--{k}" if v is True else f"--{k}={v}" for k, v in settings.items()]
        return ["inspect", f"--data={path}", *flags]
    data = {f"data.{name}": value for name, value in settings.items()}
    return ["train", *cli_overrides(path, **FAST, **data), f"--workdir={workdir}"]


@pytest.mark.parametrize("command", ["inspect", "train"])
@pytest.mark.parametrize("name", sorted(DATA_CASES))
def test_malformed_data_gets_one_named_error_and_writes_nothing(name, command, tmp_path):
    case = DATA_CASES[name]
    path = case.make(tmp_path)
    before = snapshot(tmp_path)
    outcome = run_cli(*command_line(command, path, case.settings, tmp_path / "run"))
    assert_user_error(outcome, *case.expect)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", sorted(DATA_CASES))
def test_backed_reading_gives_the_same_errors(name, tmp_path):
    """The backed loader reads the file itself (obs column by column), not through anndata: it
    must refuse every malformed file with the same named error as the in-memory loader."""
    case = DATA_CASES[name]
    path = case.make(tmp_path)
    config = data_config()
    config.update({**case.settings, "backed": True})
    with pytest.raises(DataError) as raised:
        load_perturb_data(path, config, seed=0)
    message = str(raised.value)
    assert "\n" not in message
    for fragment in case.expect:
        assert fragment in message
