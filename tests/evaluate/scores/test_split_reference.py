"""Each column of the evaluate table against its own reference: with a split by cells, the
data ATE of that split's cells alone, checked against NumPy on the right cells."""

import numpy as np
import pytest

from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.data.splits import SPLIT_CODES
from cradle_jax.evaluate.scores.ate import data_ate
from cradle_jax.evaluate.scores.data_reference import DataReference, split_metrics
from cradle_jax.evaluate.scores.split_reference import column_legend, data_ate_by_split
from tests.conftest import make_adata

LABELS = ["A", "B"]


def shifted_test_cells(config, split: str = "random", split_column=None):
    """Data whose test cells of A carry 20× the counts of gene 0 (train cells do not), and the
    AnnData they come from: a train and a test reference of A that must differ."""
    adata = make_adata([label for label in ("non-targeting", *LABELS) for _ in range(60)])
    config.update(split=split)
    if split_column is not None:
        adata.obs["split"] = split_column
    codes = load_perturb_data(adata, config, 0).split
    counts = adata.X.toarray()
    shifted = (adata.obs["perturbation"].to_numpy() == "A") & (codes == SPLIT_CODES["test"])
    counts[shifted, 0] = 20 * counts[shifted, 0] + 20
    adata.X = type(adata.X)(counts)
    data = load_perturb_data(adata, config, 0)
    assert np.array_equal(data.split, codes)
    return data, counts


def numpy_ate(data, counts, label: str, cells: np.ndarray, control_cells: np.ndarray):
    """Mean of x̃ = log2(1 + 10⁴·x/Σx) over the label's chosen cells minus control's, by hand."""
    scaled = np.log2(1 + 1e4 * counts / counts.sum(axis=1, keepdims=True))
    passing = data.qc.max(axis=1) == 0
    mine = (data.labels == label) & cells & passing
    control = (data.labels == "non-targeting") & control_cells & passing
    return scaled[mine].mean(axis=0) - scaled[control].mean(axis=0)


def test_each_split_is_referenced_by_its_own_cells_only(config):
    data, counts = shifted_test_cells(config)
    tables, present = data_ate_by_split(data, LABELS)
    for split in ("train", "val", "test"):
        cells = data.split == SPLIT_CODES[split]
        for row, label in enumerate(LABELS):
            expected = numpy_ate(data, counts, label, cells, cells)
            np.testing.assert_allclose(tables[split][row], expected, rtol=1e-5, atol=1e-5)
        assert present[split] == LABELS
    everyone = np.ones(data.n_cells, dtype=bool)
    np.testing.assert_allclose(
        tables["all"][0], numpy_ate(data, counts, "A", everyone, everyone), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(tables["all"], data_ate(data, LABELS), rtol=1e-5, atol=1e-6)
    assert tables["test"][0, 0] - tables["train"][0, 0] > 2.0  # gene 0 of A, shifted in test


def test_a_split_without_controls_takes_the_controls_of_every_split(config):
    """A column split that holds A's test cells out and keeps every control in train or val."""
    labels = np.repeat(["non-targeting", "A", "B"], 60)
    column = np.where(np.arange(180) % 5 == 0, "val", "train").astype(object)
    column[(labels == "A") & (np.arange(180) % 3 == 0)] = "test"
    data, counts = shifted_test_cells(config, "column", column)
    tables, present = data_ate_by_split(data, LABELS)
    assert present["test"] == ["A"]
    test = data.split == SPLIT_CODES["test"]
    expected = numpy_ate(data, counts, "A", test, np.ones(data.n_cells, dtype=bool))
    np.testing.assert_allclose(tables["test"][0], expected, rtol=1e-5, atol=1e-5)
    assert np.isnan(tables["test"][1]).all()


def reference_of(data, per_split: bool) -> DataReference:
    tables, present = data_ate_by_split(data, LABELS)
    return DataReference(
        labels=LABELS,
        labels_by_split=present,
        headline_split="all",
        data_ate=tables.pop("all"),
        real_median_library=1.0,
        real_pass_rate=1.0,
        data_ate_by_split=tables if per_split else {},
    )


def test_the_test_column_scores_against_the_test_cells(config):
    """A model that predicts exactly the test cells' effects scores R² = 1 on test only."""
    data, _ = shifted_test_cells(config)
    reference = reference_of(data, per_split=True)
    model = reference.data_ate_by_split["test"]
    metrics = split_metrics(reference, model)
    assert metrics["ATE_r2-test"] == pytest.approx(1.0)
    assert metrics["ATE_r2-train"] < 0.9
    assert metrics["ATE_r2-all"] < 0.99
    whole = split_metrics(reference_of(data, per_split=False), model)
    assert whole["ATE_r2-test"] == pytest.approx(whole["ATE_r2-all"])


def test_the_legend_says_what_each_column_compares_with():
    by_cells = column_legend("random", per_split_references=True)["test"]
    assert by_cells.endswith(
        "reference: the test cells only (never trained on: the held-out score)"
    )
    by_labels = column_legend("combinations", per_split_references=False)["test"]
    assert by_labels == "labels held out of training; reference: all QC-pass cells of each label"
    old_export = column_legend("random", per_split_references=False)["test"]
    assert old_export.startswith("labels with test cells; reference: all QC-pass cells")
