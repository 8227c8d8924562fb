"""`cradle-jax predict --baseline` writes the two non-learned baselines (control mean, additive)
as cell-level prediction files in the model's format, checked against NumPy by hand.

The real file is the simulated training file with the six QC metrics in obs: every cell passes
the model's thresholds except planted doublets (among the controls and one single's cells), so
the QC-pass cells the baselines are fitted on are known without the QC pipeline.
"""

import re

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from cradle_jax.data.errors import DataError
from cradle_jax.data.qc import QC_METRICS
from cradle_jax.evaluate.cell_eval_files.baseline import baseline_prediction_pair
from cradle_jax.train.bundle import load_workdir
from tests.reliability.harness import run_cli

COLUMN = "target_gene"


@pytest.fixture(scope="module")
def bundle(trained):
    return load_workdir(trained)


@pytest.fixture(scope="module")
def real(bundle):
    """The training file, QC metrics in obs: all pass but 6 control and 4 single-A doublets."""
    adata = ad.read_h5ad(bundle.config.data.path)
    medians = bundle.qc_thresholds.medians
    for metric in QC_METRICS[:-1]:
        adata.obs[metric] = medians.get(metric, 0.0)
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    doublet = np.zeros(adata.n_obs, dtype=bool)
    doublet[np.flatnonzero(labels == bundle.vocabulary.control_label)[:6]] = True
    doublet[np.flatnonzero(labels == bundle.vocabulary.singles[0])[:4]] = True
    adata.obs["predicted_doublet"] = doublet
    return adata


def dense(matrix) -> np.ndarray:
    return matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)


def log_norm(counts: np.ndarray) -> np.ndarray:
    """log1p(counts / total · 1e4) by hand, float64."""
    counts = counts.astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.log1p(np.divide(counts * 1e4, totals, where=totals > 0, out=np.zeros_like(counts)))


def qc_pass_counts(real, bundle, label: str) -> tuple[np.ndarray, np.ndarray]:
    """(cell names, counts over the model's genes) of the non-doublet cells of `label`."""
    keep = (real.obs["perturbation"].astype(str) == label).to_numpy()
    keep &= ~real.obs["predicted_doublet"].to_numpy()
    counts = dense(real[keep][:, list(bundle.gene_names)].X)
    return real.obs_names[keep].to_numpy(), counts


def a_pair(real) -> str:
    return sorted(label for label in real.obs["perturbation"].unique() if "+" in label)[0]


def controls_and_effects(real, bundle, singles):
    """Controls' names and log-normalised rows, and each single's mean minus the controls'."""
    names, counts = qc_pass_counts(real, bundle, bundle.vocabulary.control_label)
    x = log_norm(counts)
    effects = {s: log_norm(qc_pass_counts(real, bundle, s)[1]).mean(0) - x.mean(0) for s in singles}
    return names, x, effects


@pytest.mark.parametrize("baseline", ["control_mean", "additive"])
def test_baseline_files_meet_the_cell_eval_contract(bundle, real, baseline):
    control = bundle.vocabulary.control_label
    a, b = bundle.vocabulary.singles[:2]
    pair_label = a_pair(real)
    labels = [control, a, b, pair_label]
    pair = baseline_prediction_pair(
        bundle, real, [a, b, pair_label], baseline=baseline, n_cells=7, seed=0
    )
    prediction, ready = pair.prediction, pair.real
    assert list(prediction.var_names) == list(ready.var_names) == list(bundle.gene_names)
    assert set(prediction.obs[COLUMN]) == set(ready.obs[COLUMN]) == set(labels)
    assert prediction.obs_names.is_unique
    sizes = prediction.obs[COLUMN].value_counts()
    assert {sizes[label] for label in labels[1:]} == {7}
    real_labels = real.obs["perturbation"].astype(str)
    assert ready.n_obs == real_labels.isin(labels).sum()

    # The real file and the prediction's controls: X is log1p of the counts layer, exactly.
    real_controls = ready[ready.obs[COLUMN] == control]
    predicted_controls = prediction[prediction.obs[COLUMN] == control]
    assert list(predicted_controls.obs_names) == list(real_controls.obs_names)
    np.testing.assert_array_equal(dense(predicted_controls.X), dense(real_controls.X))
    exact = [ready, predicted_controls]
    if baseline == "control_mean":
        exact.append(prediction)
    for adata in exact:
        counts = dense(adata.layers["counts"])
        np.testing.assert_allclose(dense(adata.X), log_norm(counts), rtol=1e-5, atol=1e-6)
    for adata in (prediction, ready):
        counts = dense(adata.layers["counts"])
        assert np.all(counts >= 0)
        assert np.all(counts == np.round(counts))
        assert np.all(dense(adata.X) >= 0)
        assert np.any(dense(adata.X) % 1 != 0), "cell-eval would take whole numbers for counts"
        record = adata.uns["cradle_jax"]
        assert (record["target_sum"], record["transform"]) == (1e4, "log1p")
        assert record["perturbation_column"] == COLUMN
        assert record["source"] == f"baseline:{baseline}"
        assert record["controls"] == "real"
        assert record["counts_reconstructed"] == (baseline == "additive")
        assert record["qc_metrics_source"] == "obs"

    # Every predicted cell comes from a QC-pass control; additive counts are reconstructed from
    # X with that control's own total.
    names, counts = qc_pass_counts(real, bundle, control)
    totals = dict(zip(names, counts.sum(axis=1), strict=True))
    built = prediction[prediction.obs[COLUMN] != control]
    assert set(built.obs["source_cell"]) <= set(names)
    source_totals = np.array([totals[name] for name in built.obs["source_cell"]])
    expected = np.round(np.expm1(dense(built.X).astype(np.float64)) * source_totals[:, None] / 1e4)
    np.testing.assert_array_equal(dense(built.layers["counts"]), expected)


def test_control_mean_predicts_the_controls_distribution(bundle, real):
    control = bundle.vocabulary.control_label
    a, b = bundle.vocabulary.singles[:2]
    names, x, _ = controls_and_effects(real, bundle, [])
    labels = [a, b, a_pair(real)]
    pair = baseline_prediction_pair(
        bundle, real, labels, baseline="control_mean", n_cells=len(names), seed=0
    )
    record = pair.prediction.uns["cradle_jax"]
    assert dict(zip(record["fit_labels"], record["fit_cells"], strict=True)) == {
        control: len(names)
    }
    for label in labels:
        cells = pair.prediction[pair.prediction.obs[COLUMN] == label]
        assert sorted(cells.obs["source_cell"]) == sorted(names)  # each control once
        np.testing.assert_allclose(dense(cells.X).mean(0), x.mean(0), rtol=1e-5, atol=1e-6)


def test_additive_is_control_plus_the_sum_of_single_effects(bundle, real):
    control = bundle.vocabulary.control_label
    pair_label = a_pair(real)
    singles = list(bundle.vocabulary.parse(pair_label))
    names, x, effects = controls_and_effects(real, bundle, singles)
    pair = baseline_prediction_pair(
        bundle, real, [*singles, pair_label], baseline="additive", n_cells=len(names), seed=0
    )
    record = pair.prediction.uns["cradle_jax"]
    fitted = dict(zip(record["fit_labels"], record["fit_cells"], strict=True))
    by_hand = {s: len(qc_pass_counts(real, bundle, s)[0]) for s in singles}
    assert fitted == {control: len(names), **by_hand}
    assert fitted[singles[0]] < (real.obs["perturbation"] == singles[0]).sum()  # doublets out

    row_of = {name: i for i, name in enumerate(names)}
    for label, members in ((singles[0], singles[:1]), (pair_label, singles)):
        shift = sum(effects[s] for s in members)
        cells = pair.prediction[pair.prediction.obs[COLUMN] == label]
        source = x[[row_of[name] for name in cells.obs["source_cell"]]]
        assert sorted(cells.obs["source_cell"]) == sorted(names)
        # Cell by cell: the control cell shifted by the summed effects, clipped at 0.
        np.testing.assert_allclose(
            dense(cells.X), np.maximum(source + shift, 0), rtol=1e-5, atol=1e-5
        )
        # The mean over genes where no cell is clipped: control mean + Σ effects.
        unclipped = (x + shift).min(axis=0) >= 0
        assert unclipped.sum() >= 10
        np.testing.assert_allclose(
            dense(cells.X).mean(0)[unclipped],
            (x.mean(0) + shift)[unclipped],
            rtol=1e-5,
            atol=1e-5,
        )
    assert np.abs(effects[singles[0]] + effects[singles[1]]).max() > 0.1  # not a trivial shift


def test_a_single_without_fitting_cells_is_refused_by_name(bundle, real):
    pair_label = a_pair(real)
    single = bundle.vocabulary.parse(pair_label)[1]
    without = real[(real.obs["perturbation"] != single).to_numpy()].copy()
    named = f"'{re.escape(pair_label)}' needs .* '{single}'.*no cell of it"
    with pytest.raises(DataError, match=named):
        baseline_prediction_pair(
            bundle, without, [pair_label], baseline="additive", n_cells=3, seed=0
        )
    all_fail = real.copy()
    all_fail.obs["predicted_doublet"] = (all_fail.obs["perturbation"] == single).to_numpy()
    with pytest.raises(DataError, match=f"'{single}'.*cell\\(s\\) of it and none passes QC"):
        baseline_prediction_pair(
            bundle, all_fail, [pair_label], baseline="additive", n_cells=3, seed=0
        )
    # control_mean needs no single: the same file is fine.
    pair = baseline_prediction_pair(
        bundle, without, [pair_label], baseline="control_mean", n_cells=3, seed=0
    )
    assert set(pair.prediction.obs[COLUMN]) == {bundle.vocabulary.control_label, pair_label}
    with pytest.raises(DataError, match="--baseline must be one of control_mean, additive"):
        baseline_prediction_pair(bundle, real, [single], baseline="mean", n_cells=3, seed=0)


def test_the_same_seed_writes_the_same_files(bundle, real, tmp_path):
    labels = [bundle.vocabulary.singles[0], a_pair(real)]
    written = []
    for name, seed in (("first", 4), ("again", 4), ("other", 5)):
        pair = baseline_prediction_pair(
            bundle, real, labels, baseline="additive", n_cells=9, seed=seed
        )
        pair.prediction.write_h5ad(tmp_path / f"{name}.h5ad")
        written.append(ad.read_h5ad(tmp_path / f"{name}.h5ad"))
    first, again, other = written
    np.testing.assert_array_equal(dense(first.X), dense(again.X))
    np.testing.assert_array_equal(dense(first.layers["counts"]), dense(again.layers["counts"]))
    assert first.obs.equals(again.obs)
    assert first.uns["cradle_jax"]["seed"] == 4
    assert list(first.obs["source_cell"]) != list(other.obs["source_cell"])


def test_cli_writes_the_baseline_files(bundle, trained, tmp_path):
    pair_label = a_pair(ad.read_h5ad(bundle.config.data.path))
    pred, ready = tmp_path / "pred.h5ad", tmp_path / "real_ready.h5ad"
    outcome = run_cli(
        "predict", f"--workdir={trained}", f"--real={bundle.config.data.path}", f"--out={pred}",
        f"--real_out={ready}", f"--perturbations={pair_label}", "--n_cells=4",
        "--baseline=additive",
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    assert "baseline additive" in outcome.out
    assert "cell-eval run -ap" in outcome.out
    prediction, real_ready = ad.read_h5ad(pred), ad.read_h5ad(ready)
    assert list(prediction.var_names) == list(real_ready.var_names)
    assert set(prediction.obs[COLUMN]) == set(real_ready.obs[COLUMN])
    record = prediction.uns["cradle_jax"]
    assert record["source"] == "baseline:additive"
    assert record["qc_metrics_source"] == "computed"  # the simulated file has no QC in obs
    assert real_ready.uns["cradle_jax"]["file"] == "real"
