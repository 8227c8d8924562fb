"""The generated cells' QC basis is fitted where it is used, when model.json is written and in
evaluation, not each time the training data are loaded: Scrublet over up to BASIS_CELLS cells
is time and memory that training does not need (docs/metrics.md#qc-basis)."""

import json

import numpy as np
import pytest

from cradle_jax.config import data_config
from cradle_jax.data import qc_sources
from cradle_jax.data.dataset import load_perturb_data, read_h5ad
from cradle_jax.data.qc import fit_thresholds, qc_flags, total_qc
from cradle_jax.train.bundle import META_NAME
from cradle_jax.train.config import check_config
from cradle_jax.train.run import open_run
from tests.reliability.builders import FAST
from tests.reliability.harness import run_cli
from tests.train.conftest import cli_overrides, tiny_config


def refused(*args, **kwargs):
    raise AssertionError("the generated cells' QC basis was fitted")


@pytest.fixture
def counted(monkeypatch) -> list[int]:
    """Each fit of the generated cells' QC basis, counted."""
    calls = []
    fit = qc_sources.matrix_basis

    def counting(*args, **kwargs):
        calls.append(1)
        return fit(*args, **kwargs)

    monkeypatch.setattr(qc_sources, "matrix_basis", counting)
    return calls


def test_loading_the_training_data_fits_no_generated_basis(tiny_data, monkeypatch):
    """The tiny screen has its QC metrics in obs, so a basis exists to fit; the load does not
    fit it, and the real cells' flags are the MAD rules on their obs metrics, as before."""
    monkeypatch.setattr(qc_sources, "matrix_basis", refused)
    config = data_config()
    data = load_perturb_data(tiny_data, config, 0)
    assert data.qc_thresholds.generated_basis is None
    assert data.qc_metrics.matrix is None
    metrics = qc_sources.qc_metrics_from_obs(read_h5ad(tiny_data).obs)
    flags = qc_flags(metrics.table, fit_thresholds(metrics), config.qc_threshold)
    np.testing.assert_array_equal(data.qc[:, 0], total_qc(flags))
    assert 0 < data.qc.mean() < 1

    train_config = tiny_config(tiny_data)
    run = open_run(train_config, check_config(train_config), None)  # what train opens
    assert run.data.qc_thresholds.generated_basis is None


def test_training_fits_the_basis_once_for_model_json(tiny_data, tmp_path, counted):
    workdir = tmp_path / "run"
    outcome = run_cli("train", *cli_overrides(tiny_data, **FAST), f"--workdir={workdir}")
    assert outcome.code == 0, outcome.err
    assert len(counted) == 1
    basis = json.loads((workdir / META_NAME).read_text())["qc_thresholds"]["generated_basis"]
    counts = read_h5ad(tiny_data).X
    assert basis["sources"]["UMI_count"] == "computed"  # over the matrix's genes
    assert basis["medians"]["UMI_count"] == np.median(np.asarray(counts.sum(1)).ravel())


def test_the_trained_bundle_and_inspect_carry_the_basis(trained_run, tiny_data):
    record = json.loads((trained_run / META_NAME).read_text())["qc_thresholds"]
    assert record["generated_basis"] is not None
    outcome = run_cli("inspect", f"--data={tiny_data}", "--json")
    assert outcome.code == 0, outcome.err
    shown = json.loads(outcome.out)["qc_thresholds"]["generated_basis"]
    for fitted in ("medians", "mads"):  # inspect calls doublets, this run did not
        assert shown[fitted] == record["generated_basis"][fitted]
