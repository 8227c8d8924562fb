"""`cradle-jax evaluate` end to end on a tiny trained run of simulated data."""

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.data.splits import SPLIT_CODES
from cradle_jax.evaluate.report.run import TABLES_NAME, evaluate, write_results
from cradle_jax.evaluate.report.text import report
from cradle_jax.evaluate.scores.data_reference import data_reference
from cradle_jax.evaluate.scores.metrics import ate_metrics
from cradle_jax.train.bundle import load_workdir
from tests.train.conftest import ROOT


@pytest.fixture(scope="module")
def evaluation(trained):
    """The data, and what `evaluate` returns: metrics, tables and the QC cells' metrics."""
    bundle = load_workdir(trained)
    data = load_perturb_data(bundle.config.data.path, bundle.config.data, bundle.config.seed)
    truth_path = bundle.config.data.path.replace(".h5ad", ".truth.npz")
    truth = dict(np.load(truth_path, allow_pickle=True))
    reference = data_reference(bundle, data, bundle.config.eval, seed=0, truth=truth)
    return data, evaluate(bundle, reference, bundle.config.eval, seed=0)


@pytest.fixture(scope="module")
def evaluated(evaluation):
    metrics, tables, _ = evaluation[1]
    return metrics, tables


def test_every_metric_is_reported_per_split_with_the_headline_on_test(evaluated):
    metrics, _ = evaluated
    for name in ("ATE_pearsonr", "ATE_r2", "ATE_pearsonr_top20", "ATE_r2_top20",
                 "jaccard_sim_top20", "jaccard_sim_top50"):  # fmt: skip
        for split in ("all", "train", "val", "test"):
            assert f"{name}-{split}" in metrics["ate"]
    assert metrics["headline"]["split"] == "test"
    assert metrics["headline"]["ATE_pearsonr"] == metrics["ate"]["ATE_pearsonr-test"]
    for key in ("depth_matched", "library_1e4"):
        for t in (3, 4, 5):
            assert 0.0 <= metrics["qc"][key][f"qc_pass_rate_t{t}"] <= 1.0
    assert np.isfinite(metrics["test_iwelbo"])
    assert set(metrics["truth"]) == {
        "truth_ATE_pearsonr", "truth_ATE_r2", "truth_jaccard_top20", "truth_jaccard_top50"
    }  # fmt: skip
    text = report(metrics)
    assert text.startswith("headline (test split): ATE_pearsonr")
    criteria = metrics["qc"]["depth_matched"]["criteria"]
    line = next(x for x in text.splitlines() if x.startswith("QC criteria of generated cells"))
    assert all(name.removeprefix("qc_") in line for name in criteria)
    assert ("no doublet call" in line) == ("qc_predicted_doublet" not in criteria)


def test_planted_truth_is_also_scored_on_each_splits_labels(trained, evaluated):
    """The test split's truth ρ is that of its rows alone (the unseen pairs), by hand."""
    metrics, tables = evaluated
    config = load_workdir(trained).config
    data = load_perturb_data(config.data.path, config.data, config.seed)
    truth = dict(np.load(config.data.path.replace(".h5ad", ".truth.npz"), allow_pickle=True))
    planted = [str(label) for label in truth["labels"]]
    labels = [str(label) for label in tables["labels"]]
    held_out = set(data.labels[data.split == SPLIT_CODES["test"]].astype(str))
    test = [i for i, label in enumerate(labels) if label in held_out]
    assert test
    assert all("+" in labels[i] for i in test)  # the unseen pairs
    true_ate = truth["true_ate"][[planted.index(labels[i]) for i in test]]
    expected = np.corrcoef(true_ate.ravel(), tables["model_ate"][test].ravel())[0, 1]
    got = metrics["truth_by_split"]["test"]["truth_ATE_pearsonr"]
    assert got == pytest.approx(expected, rel=1e-5)
    assert set(metrics["truth_by_split"]["test"]) == set(metrics["truth"])
    assert "planted truth (test split): truth_ATE_pearsonr" in report(metrics)


def test_the_all_split_metrics_are_those_of_the_saved_tables(evaluated, tmp_path):
    metrics, tables = evaluated
    write_results(metrics, tables, tmp_path)
    with np.load(tmp_path / TABLES_NAME) as saved:
        recomputed = ate_metrics(saved["data_ate"], saved["model_ate"])
    for name, value in recomputed.items():
        assert metrics["ate"][f"{name}-all"] == pytest.approx(value, rel=1e-6)


def test_the_cli_writes_the_same_metrics_as_the_library(trained, evaluated):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-m", "cradle_jax", "evaluate", f"--workdir={trained}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "headline (test split)" in result.stdout
    pngs = sorted(p.name for p in (trained / "plots").iterdir())
    assert pngs[:2] == ["ate_scatter.png", "latent_embedding.png"]
    assert pngs[2].startswith("qc_violins_")
    assert json.loads((trained / "metrics.json").read_text()) == evaluated[0]


def test_evaluate_without_a_trained_model_is_a_clear_error(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-m", "cradle_jax", "evaluate", f"--workdir={tmp_path}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "holds no trained model" in result.stderr


def test_the_headline_qc_pass_rate_is_that_of_cells_at_the_real_depth(evaluation):
    """The headline's generated cells (and the violins' table) have the depth of the test
    split's real QC-pass cells (about 3,000 counts here), not ℓ = 10⁴; the 10⁴ rate is kept."""
    data, (metrics, _, generated) = evaluation
    test = (data.split == SPLIT_CODES["test"]) & (data.qc.max(axis=1) == 0)
    real = float(np.median(data.library_size[test]))
    assert real < 5000
    assert float(generated["UMI_count"].median()) == pytest.approx(real, rel=0.25)
    qc = metrics["qc"]
    assert qc["depth"]["real_median"] == pytest.approx(real)
    assert qc["depth"]["real_cells"] == int(test.sum())
    assert qc["depth"]["generated_median"] == pytest.approx(real, rel=0.25)
    head = metrics["headline"]
    assert head["qc_pass_rate_t3"] == qc["depth_matched"]["qc_pass_rate_t3"]
    assert head["qc_pass_rate_t3_library_1e4"] == qc["library_1e4"]["qc_pass_rate_t3"]
    text = report(metrics)
    assert "QC pass rate of generated cells at library 1e4 (paper-comparable): t=3" in text
    assert "QC pass rate of generated cells at the real depth (ℓ drawn from" in text


def test_a_combinations_split_keeps_every_column_on_all_qc_pass_cells(evaluation):
    """Held-out perturbations: the columns differ by their labels, not by their reference."""
    _, (metrics, tables, _) = evaluation
    assert not any(name.startswith("data_ate_") for name in tables)
    assert metrics["columns"]["test"].startswith("labels held out of training")


def test_the_report_says_how_each_metric_was_judged_when_one_is_not(evaluated):
    metrics, _ = evaluated
    header = "how generated cells were judged on each QC metric:"
    refitted = "thresholds refitted over the model's genes"
    judged = {"UMI_count": "the real thresholds", "ngenes": refitted}
    missing = "not judged: cannot be computed over the model's genes (no gene matches ^MT-)"

    def report_with(basis: dict) -> list[str]:
        changed = copy.deepcopy(metrics)
        changed["qc"]["depth_matched"]["basis"] = basis
        return report(changed).splitlines()

    assert header not in report_with(judged)
    lines = report_with({**judged, "pct_counts_mt": missing})
    start = lines.index(header)
    assert lines[start + 1 : start + 4] == [
        "  UMI_count: the real thresholds",
        f"  ngenes: {refitted}",
        f"  pct_counts_mt: {missing}",
    ]
