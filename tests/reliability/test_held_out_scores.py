"""A held-out score a user can get and check: each cell's split by name in the workdir and the
export, a table that says what its columns compare with, and a QC pass rate at the real depth."""

import json
import shutil

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cradle_jax.data.cell_splits import SPLITS_NAME, read_cell_splits
from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.data.splits import UNUSED
from cradle_jax.evaluate.report.export import load_export
from cradle_jax.evaluate.scores.qc_depth import PAPER_LABEL
from cradle_jax.train.bundle import load_workdir
from tests.reliability.harness import run_cli

EVALUATION = ("--noplots", "--ate_particles=32", "--qc_cells=10")
NAMES = {0: "train", 1: "val", 2: "test", UNUSED: "unused"}


@pytest.fixture(scope="module")
def evaluated_run(trained_run, tmp_path_factory):
    """A copy of the trained run (random split) after `cradle-jax evaluate`, and its stdout."""
    workdir = shutil.copytree(trained_run, tmp_path_factory.mktemp("evaluated") / "run")
    outcome = run_cli("evaluate", f"--workdir={workdir}", *EVALUATION)
    assert outcome.code == 0, outcome.err[-3000:]
    return workdir, outcome.out


def data_splits(workdir) -> pd.Series:
    """Each cell's split name by cell name, as the loader splits the run's data."""
    config = load_workdir(workdir).config
    data = load_perturb_data(config.data.path, config.data, config.seed)
    names = ad.read_h5ad(config.data.path).obs_names
    return pd.Series([NAMES[int(code)] for code in data.split], index=names)


def test_train_writes_each_cells_split_by_name(trained_run):
    written = read_cell_splits(trained_run / SPLITS_NAME)
    expected = data_splits(trained_run)
    assert written.index.tolist() == expected.index.tolist()
    assert written.tolist() == expected.tolist()


def test_evaluate_writes_each_cells_split_by_name(evaluated_run):
    workdir, _ = evaluated_run
    written = read_cell_splits(workdir / SPLITS_NAME)
    expected = data_splits(workdir)
    assert written.index.tolist() == expected.index.tolist()
    assert written.tolist() == expected.tolist()
    assert set(written) == {"train", "val", "test"}


def test_the_export_carries_each_cells_split(evaluated_run, exported, tmp_path):
    workdir, _ = evaluated_run
    expected = data_splits(workdir)
    _, reference = load_export(exported)
    table = reference.cell_splits.table()
    assert table["cell"].tolist() == expected.index.tolist()
    assert table["split"].tolist() == expected.tolist()
    out = tmp_path / "results"
    outcome = run_cli("evaluate", f"--export={exported}", f"--out={out}", *EVALUATION[1:])
    assert outcome.code == 0, outcome.err[-3000:]
    assert read_cell_splits(out / SPLITS_NAME).tolist() == expected.tolist()


def test_the_table_says_what_each_column_compares_with(evaluated_run):
    workdir, out = evaluated_run
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert set(metrics["columns"]) == {"all", "train", "val", "test"}
    assert "reference: the test cells only" in metrics["columns"]["test"]
    assert f"  test: {metrics['columns']['test']}" in out
    with np.load(workdir / "ate_tables.npz") as tables:
        assert {"data_ate_train", "data_ate_val", "data_ate_test"} <= set(tables.files)
        assert not np.allclose(tables["data_ate_test"], tables["data_ate_train"])


def test_the_headline_qc_pass_rate_is_at_the_real_depth(evaluated_run):
    """The tiny data have about 48 counts per cell: cells generated at ℓ = 10⁴ would have 200
    times as many."""
    workdir, out = evaluated_run
    metrics = json.loads((workdir / "metrics.json").read_text())
    qc, head = metrics["qc"], metrics["headline"]
    real = qc["depth"]["real_median"]
    assert real < 100
    assert qc["depth"]["generated_median"] == pytest.approx(real, rel=0.3)
    assert head["qc_pass_rate_t3"] == qc["depth_matched"]["qc_pass_rate_t3"]
    assert head["qc_pass_rate_t3_library_1e4"] == qc["library_1e4"]["qc_pass_rate_t3"]
    assert f"QC pass rate of generated cells {PAPER_LABEL}: t=3" in out
    assert f"(at the real depth; {PAPER_LABEL} " in out.splitlines()[0]
