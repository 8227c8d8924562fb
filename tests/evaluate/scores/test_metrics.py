"""ATE metrics (docs/metrics.md#ate-metrics) against independent computations: scipy, sklearn
and plain loops."""

import math

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import r2_score

from cradle_jax.evaluate.scores.metrics import (
    align,
    ate_metrics,
    split_ate_metrics,
    top_k_genes,
    truth_metrics,
)

KEYS = [
    "ATE_pearsonr",
    "ATE_r2",
    "ATE_pearsonr_top20",
    "ATE_r2_top20",
    "jaccard_sim_top20",
    "jaccard_sim_top50",
]


@pytest.fixture
def tables():
    """A data ATE table (4 perturbations × 30 genes) and a noisy model of it."""
    rng = np.random.default_rng(0)
    data = rng.normal(size=(4, 30))
    model = 0.8 * data + 0.5 * rng.normal(size=(4, 30))
    return data, model


def loop_top_k(row, k):
    """Indices of the k largest |value|, lower index first among ties, by a plain sort."""
    return sorted(range(len(row)), key=lambda g: (-abs(row[g]), g))[:k]


def test_top_k_genes_matches_a_plain_sort_with_ties():
    table = np.array(
        [
            [0.5, -2.0, 2.0, 0.1, -0.5, 1.0],  # +2/−2 and +0.5/−0.5 pairs
            [1.0, 1.0, 1.0, 0.0, 3.0, 0.0],  # equal values
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # all tied
        ]
    )
    got = top_k_genes(table, 3)
    assert got.shape == (3, 3)
    for row, indices in zip(table, got, strict=True):
        assert indices.tolist() == loop_top_k(row.tolist(), 3)
    assert got.tolist() == [[1, 2, 5], [4, 0, 1], [0, 1, 2]]
    assert top_k_genes(table, 4)[0].tolist() == [1, 2, 5, 0]  # 0.5 at gene 0 before −0.5 at 4


def test_top_k_genes_caps_k_at_the_gene_count():
    table = np.array([[0.1, -0.3]])
    assert top_k_genes(table, 5).tolist() == [[1, 0]]
    with pytest.raises(ValueError, match="k must be"):
        top_k_genes(table, 0)


def test_ate_metrics_match_scipy_and_sklearn(tables):
    data, model = tables
    got = ate_metrics(data, model)
    assert list(got) == KEYS
    assert got["ATE_pearsonr"] == pytest.approx(pearsonr(data.ravel(), model.ravel())[0])
    assert got["ATE_r2"] == pytest.approx(r2_score(data.ravel(), model.ravel()))

    y, y_hat = [], []  # top-20 restriction by the data effect, computed row by row
    for data_row, model_row in zip(data, model, strict=True):
        for g in loop_top_k(data_row.tolist(), 20):
            y.append(data_row[g])
            y_hat.append(model_row[g])
    assert got["ATE_pearsonr_top20"] == pytest.approx(pearsonr(y, y_hat)[0])
    assert got["ATE_r2_top20"] == pytest.approx(r2_score(y, y_hat))

    for k in (20, 50):
        expected = np.mean(
            [
                len(set(loop_top_k(d.tolist(), k)) & set(loop_top_k(m.tolist(), k)))
                / len(set(loop_top_k(d.tolist(), k)) | set(loop_top_k(m.tolist(), k)))
                for d, m in zip(data, model, strict=True)
            ]
        )
        assert got[f"jaccard_sim_top{k}"] == pytest.approx(expected)
    assert got["jaccard_sim_top50"] == 1.0  # k ≥ G: both sets are all 30 genes


def test_top_k_suffix_follows_top_k(tables):
    got = ate_metrics(*tables, top_k=5, jaccard_ks=(3,))
    assert list(got) == [
        "ATE_pearsonr",
        "ATE_r2",
        "ATE_pearsonr_top5",
        "ATE_r2_top5",
        "jaccard_sim_top3",
    ]


def test_jaccard_by_hand():
    data = np.array([[3.0, 2.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 2.0]])
    model = np.array([[0.0, 2.0, 1.0, 3.0, 0.0], [0.0, 0.0, 0.0, 1.0, 2.0]])
    # Row 0: {0, 1, 2} vs {1, 2, 3} → 2/4; row 1: {4, 3, 0} vs the same → 1.
    got = ate_metrics(data, model, top_k=3, jaccard_ks=(3,))
    assert got["jaccard_sim_top3"] == pytest.approx(0.75)
    assert ate_metrics(data, data, top_k=3, jaccard_ks=(1, 3))["jaccard_sim_top3"] == 1.0


def test_identical_tables_score_perfectly(tables):
    data, _ = tables
    got = ate_metrics(data, data.copy())
    assert all(value == pytest.approx(1.0) for value in got.values())


def test_degenerate_inputs_give_nan_not_errors(tables):
    empty = ate_metrics(np.zeros((0, 30)), np.zeros((0, 30)))
    assert list(empty) == KEYS
    assert all(math.isnan(value) for value in empty.values())

    constant = ate_metrics(np.ones((2, 30)), tables[1][:2])
    assert math.isnan(constant["ATE_pearsonr"])
    assert math.isnan(constant["ATE_r2"])
    assert constant["jaccard_sim_top20"] == pytest.approx(
        np.mean(
            [
                len(set(range(20)) & set(loop_top_k(m.tolist(), 20)))
                / len(set(range(20)) | set(loop_top_k(m.tolist(), 20)))
                for m in tables[1][:2]
            ]
        )
    )
    flat_model = ate_metrics(tables[0], np.zeros_like(tables[0]))
    assert math.isnan(flat_model["ATE_pearsonr"])
    assert flat_model["ATE_r2"] == pytest.approx(r2_score(tables[0].ravel(), np.zeros(120)))


@pytest.mark.filterwarnings("error")
def test_constant_or_non_finite_tables_give_nan_without_a_warning(tables):
    data, model = tables
    with_nan = model.copy()
    with_nan[0, 0] = np.nan
    for reference, predicted in ((data, with_nan), (np.ones((2, 30)), model[:2])):
        got = ate_metrics(reference, predicted)
        assert math.isnan(got["ATE_pearsonr"])
        assert math.isnan(got["ATE_r2"])
    assert math.isnan(ate_metrics(data, np.zeros_like(data))["ATE_pearsonr"])


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 30\).*\(4, 29\)"):
        ate_metrics(np.zeros((4, 30)), np.zeros((4, 29)))


def test_split_metrics(tables):
    data, model = tables
    labels = np.array(["A", "B", "A+B", "C"])
    splits = {
        "all": labels,
        "train": ["non-targeting", "A", "B", "C"],
        "val": [],
        "test": ["A+B", "C"],
    }
    got = split_ate_metrics(data, model, labels, splits)
    assert len(got) == 4 * len(KEYS)
    assert all(got[f"{key}-val"] is None for key in KEYS)
    full = ate_metrics(data, model)
    assert all(got[f"{key}-all"] == full[key] for key in KEYS)
    train = ate_metrics(data[[0, 1, 3]], model[[0, 1, 3]])
    assert all(got[f"{key}-train"] == train[key] for key in KEYS)
    test = ate_metrics(data[[2, 3]], model[[2, 3]])
    assert all(got[f"{key}-test"] == test[key] for key in KEYS)


def test_split_labels_are_compared_whole():
    """A longer split label must not match a row label it starts with."""
    table = np.arange(6.0).reshape(2, 3)
    got = split_ate_metrics(table, table, ["A", "B"], {"test": ["AB"]}, top_k=2, jaccard_ks=(2,))
    assert got["ATE_r2-test"] is None


def test_align_inner_join_in_the_order_of_the_first_table():
    labels_a = ["C", "A", "B", "D"]
    table_a = np.array([[3.0], [1.0], [2.0], [4.0]])
    labels_b = np.array(["A", "B", "C", "E"])
    table_b = np.array([[10.0], [20.0], [30.0], [50.0]])
    labels, a, b = align(labels_a, table_a, labels_b, table_b)
    assert labels.tolist() == ["C", "A", "B"]
    assert a[:, 0].tolist() == [3.0, 1.0, 2.0]
    assert b[:, 0].tolist() == [30.0, 10.0, 20.0]

    labels, a, b = align(["X"], np.zeros((1, 2)), ["Y"], np.zeros((1, 2)))
    assert labels.size == 0
    assert a.shape == b.shape == (0, 2)
    with pytest.raises(ValueError, match="duplicate"):
        align(["A", "A"], np.zeros((2, 1)), ["A"], np.zeros((1, 1)))
    with pytest.raises(ValueError, match="rows"):
        align(["A"], np.zeros((2, 1)), ["A"], np.zeros((1, 1)))


def test_truth_metrics(tables):
    true_ate, model = tables
    planted = {k: top_k_genes(true_ate, k) for k in (20, 50)}
    perfect = truth_metrics(true_ate, true_ate.copy(), planted)
    assert list(perfect) == [
        "truth_ATE_pearsonr",
        "truth_ATE_r2",
        "truth_jaccard_top20",
        "truth_jaccard_top50",
    ]
    assert all(value == pytest.approx(1.0) for value in perfect.values())

    got = truth_metrics(true_ate, model, planted)
    assert got["truth_ATE_pearsonr"] == pytest.approx(pearsonr(true_ate.ravel(), model.ravel())[0])
    assert got["truth_ATE_r2"] == pytest.approx(r2_score(true_ate.ravel(), model.ravel()))
    assert got["truth_jaccard_top20"] == ate_metrics(true_ate, model)["jaccard_sim_top20"]


def test_truth_metrics_with_a_given_planted_set():
    model = np.array([[0.0, 2.0, 1.0, 3.0, 0.0], [5.0, 0.0, 0.0, 1.0, 2.0]])
    planted = {3: np.array([[0, 1, 2], [0, 4, 3]])}
    # Row 0: {0, 1, 2} vs model's {3, 1, 2} → 0.5; row 1: {0, 4, 3} vs {0, 4, 3} → 1.
    got = truth_metrics(np.zeros_like(model), model, planted)
    assert got["truth_jaccard_top3"] == pytest.approx(0.75)
    assert math.isnan(got["truth_ATE_r2"])  # a constant truth: R² undefined
    with pytest.raises(ValueError, match="planted top-3"):
        truth_metrics(model, model, {3: planted[3][:1]})
