"""QC metrics and MAD flags (docs/data.md#qc-metrics, docs/data.md#qc-rules,
docs/metrics.md#qc-pass-rate) against few-line NumPy recomputations."""

import json
import logging

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cradle_jax.data import qc
from cradle_jax.data.errors import DataError

GENES = ["MT-CO1", "MT-ND1", "RPL3", "RPS6", "HBB", "HBEGF", "GAPDH", "ACTB"]


def tiny_counts() -> np.ndarray:
    """6 cells x 8 genes (columns as GENES); cell 5 has no counts at all."""
    return np.array(
        [
            [3, 1, 2, 0, 0, 1, 5, 4],
            [0, 0, 7, 2, 1, 0, 1, 0],
            [10, 4, 0, 0, 0, 0, 2, 1],
            [1, 0, 1, 1, 9, 0, 0, 3],
            [0, 2, 0, 0, 0, 6, 8, 8],
            [0, 0, 0, 0, 0, 0, 0, 0],
        ],
        dtype=np.float32,
    )


def cell_names(n: int) -> list[str]:
    return [f"cell{i}" for i in range(n)]


def test_gene_pattern_masks_match_hand_labels():
    names = ["MT-CO1", "MTOR", "mt-co1", "RPL3", "RPS6", "RPLP0", "RP11", "HBB", "HBA1"]
    names += ["HBP1", "HBEGF", "HB", "GAPDH"]
    masks = qc.gene_pattern_masks(names)
    expected_mt = [n.startswith("MT-") for n in names]
    expected_ribo = [n.startswith("RPS") or n.startswith("RPL") for n in names]
    # ^HB[^(P)]: "HB" plus one more character that is none of "(", "P", ")".
    expected_hb = [n[:2] == "HB" and len(n) > 2 and n[2] not in "(P)" for n in names]
    assert expected_hb[names.index("HBEGF")]
    assert not expected_hb[names.index("HBP1")]
    np.testing.assert_array_equal(masks["mt"], expected_mt)
    np.testing.assert_array_equal(masks["ribo"], expected_ribo)
    np.testing.assert_array_equal(masks["hb"], expected_hb)
    assert all(mask.dtype == bool for mask in masks.values())


def test_compute_qc_metrics_matches_numpy():
    x = tiny_counts()
    metrics = qc.compute_qc_metrics(sp.csr_matrix(x), GENES, cell_names(6), seed=0, doublets=False)
    table = metrics.table
    assert metrics.source == "computed"
    assert list(table.columns) == list(qc.QC_METRICS[:-1])
    assert list(table.index) == cell_names(6)
    assert all(table[c].dtype == np.float64 for c in table.columns)
    total = x.sum(1)
    np.testing.assert_array_equal(table["UMI_count"], total)
    np.testing.assert_array_equal(table["ngenes"], (x > 0).sum(1))
    safe_total = np.where(total > 0, total, 1.0)
    for name, cols in {"mt": [0, 1], "ribo": [2, 3], "hb": [4, 5]}.items():
        expected = 100 * x[:, cols].sum(1) / safe_total  # an empty cell has share 0
        np.testing.assert_allclose(table[f"pct_counts_{name}"], expected, rtol=1e-5)
    assert set(metrics.unavailable) == {"predicted_doublet"}


def test_missing_gene_patterns_are_unavailable_and_logged(caplog):
    x = tiny_counts()
    genes = [f"GENE{j}" for j in range(8)]
    with caplog.at_level(logging.WARNING, logger="cradle_jax.data.qc"):
        metrics = qc.compute_qc_metrics(sp.csr_matrix(x), genes, cell_names(6), seed=0)
    missing = {"pct_counts_mt", "pct_counts_ribo", "pct_counts_hb", "predicted_doublet"}
    assert set(metrics.unavailable) == missing
    assert "^MT-" in metrics.unavailable["pct_counts_mt"]
    assert "^HB[^(P)]" in metrics.unavailable["pct_counts_hb"]
    assert list(metrics.table.columns) == ["UMI_count", "ngenes"]
    for metric in missing:
        assert any(metric in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    flags = qc.qc_flags(metrics.table, qc.fit_thresholds(metrics), 3)
    assert list(flags.columns) == ["qc_UMI_count", "qc_ngenes"]


def test_too_few_cells_for_scrublet_is_unavailable_not_an_error(caplog):
    x = tiny_counts()[:5]
    with caplog.at_level(logging.WARNING, logger="cradle_jax.data.qc"):
        metrics = qc.compute_qc_metrics(sp.csr_matrix(x), GENES, cell_names(5), seed=0)
    assert "predicted_doublet" not in metrics.table.columns
    assert "5" in metrics.unavailable["predicted_doublet"]
    assert any("predicted_doublet" in r.getMessage() for r in caplog.records)


def random_counts(n_cells: int, n_genes: int, seed: int) -> sp.csr_matrix:
    """Negative binomial counts from three cell types, named so all three patterns match."""
    rng = np.random.default_rng(seed)
    profiles = rng.gamma(0.5, 2.0, size=(3, n_genes))
    mean = profiles[rng.integers(0, 3, n_cells)] * rng.uniform(0.5, 2.0, size=(n_cells, 1))
    return sp.csr_matrix(rng.negative_binomial(2, 2 / (2 + mean)).astype(np.float32))


def scrublet_genes(n_genes: int) -> list[str]:
    return ["MT-CO1", "RPL3", "HBB"] + [f"GENE{j}" for j in range(n_genes - 3)]


SCRUBLET_BREAKS = {
    # scanpy's Scrublet raising: no call
    "fails": ("scanpy.pp", "scrublet", ValueError("arpack did not converge\nsecond line"),
              "arpack did not converge"),
    # scanpy then calls no cell a doublet when it finds no threshold: that is no call either
    "no_threshold": ("skimage.filters", "threshold_minimum",
                     RuntimeError("Unable to find two maxima in histogram"),
                     "no doublet-score threshold"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SCRUBLET_BREAKS))
def test_a_doublet_call_scrublet_could_not_make_is_unavailable_not_all_singlets(case, monkeypatch):
    import importlib

    module, name, error, expected = SCRUBLET_BREAKS[case]

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(importlib.import_module(module), name, broken)
    counts = random_counts(300, 200, 1)
    metrics = qc.compute_qc_metrics(counts, scrublet_genes(200), cell_names(300), seed=0)
    reason = metrics.unavailable["predicted_doublet"]
    assert expected in reason
    assert "\n" not in reason
    assert "predicted_doublet" not in metrics.table.columns
    thresholds = qc.fit_thresholds(metrics)
    assert not thresholds.doublets
    generated = pd.DataFrame({"UMI_count": [1e4, 1e4], "predicted_doublet": [True, False]})
    flags = qc.qc_flags(generated, thresholds, 3, doublets=thresholds.doublets)
    assert list(flags.columns) == ["qc_UMI_count"]


def test_generated_doublet_calls_count_only_where_the_real_data_had_one():
    real = metric_table()
    with_call = qc.fit_thresholds(qc.QCMetrics(real, {}, "obs"))
    without_call = qc.fit_thresholds(
        qc.QCMetrics(real.drop(columns="predicted_doublet"), {"predicted_doublet": "x"}, "obs")
    )
    assert with_call.doublets
    assert not without_call.doublets
    generated = pd.DataFrame({"predicted_doublet": [True, False, False, False]})
    assert qc.pass_rate(qc.qc_flags(generated, with_call, 3, doublets=with_call.doublets)) == 0.75
    assert qc.pass_rate(qc.qc_flags(generated, without_call, 3, without_call.doublets)) == 1.0
    assert qc.pass_rate(qc.qc_flags(generated, without_call, 3, doublets=True)) == 0.75  # own call


def test_a_doublet_call_that_flags_no_real_cell_is_not_used_for_generated_cells(caplog):
    real = metric_table()
    real["predicted_doublet"] = False
    thresholds = qc.fit_thresholds(qc.QCMetrics(real, {}, "computed"))
    assert not thresholds.doublets
    assert any("called no cell a doublet" in r.getMessage() for r in caplog.records)
    caplog.clear()  # from obs, generated cells are judged on the matrix basis: no word here
    assert not qc.fit_thresholds(qc.QCMetrics(real, {}, "obs")).doublets
    assert not any("called no cell a doublet" in r.getMessage() for r in caplog.records)
    generated = pd.DataFrame({"UMI_count": [1e4, 1e4], "predicted_doublet": [True, False]})
    flags = qc.qc_flags(generated, thresholds, 3, doublets=thresholds.doublets)
    assert list(flags.columns) == ["qc_UMI_count"]


def test_thresholds_written_before_the_doublet_flag_score_doublets():
    d = qc.fit_thresholds(qc.QCMetrics(metric_table(), {}, "obs")).to_dict()
    del d["doublets"]
    assert qc.QCThresholds.from_dict(d).doublets


def test_scrublet_doublets_are_bool_and_deterministic():
    counts = random_counts(300, 200, 1)
    names = cell_names(300)
    first = qc.compute_qc_metrics(counts, scrublet_genes(200), names, seed=7)
    second = qc.compute_qc_metrics(counts, scrublet_genes(200), names, seed=7)
    assert first.unavailable == {}
    assert list(first.table.columns) == list(qc.QC_METRICS)
    assert first.table["predicted_doublet"].dtype == bool
    pd.testing.assert_frame_equal(first.table, second.table)


def test_scrublet_records_its_threshold_and_calls_by_one_it_is_given():
    counts = random_counts(300, 200, 1)
    names = cell_names(300)
    own = qc.compute_qc_metrics(counts, scrublet_genes(200), names, seed=7)
    assert own.doublet_threshold is not None
    assert 0 < own.doublet_threshold < 1
    never = qc.compute_qc_metrics(
        counts, scrublet_genes(200), names, seed=7, doublet_threshold=1.0
    )  # scores are below 1
    assert never.doublet_threshold == 1.0
    assert not never.table["predicted_doublet"].any()
    everyone = qc.compute_qc_metrics(
        counts, scrublet_genes(200), names, seed=7, doublet_threshold=-1.0
    )
    assert everyone.table["predicted_doublet"].all()


def test_fitted_thresholds_keep_the_real_doublet_score_threshold_through_json():
    metrics = qc.QCMetrics(metric_table(), {}, "computed", doublet_threshold=0.31)
    thresholds = qc.fit_thresholds(metrics)
    assert thresholds.doublet_score == 0.31
    d = json.loads(json.dumps(thresholds.to_dict()))
    assert qc.QCThresholds.from_dict(d) == thresholds
    del d["doublet_score"]  # written before it was recorded: Scrublet's own threshold
    assert qc.QCThresholds.from_dict(d).doublet_score is None


def metric_table() -> pd.DataFrame:
    """Continuous metrics with known medians; pct_counts_hb has MAD 0 (median 0)."""
    return pd.DataFrame(
        {
            "UMI_count": [1000.0, 1200.0, 900.0, 1100.0, 100.0, 1050.0, 980.0],
            "ngenes": [500.0, 520.0, 480.0, 510.0, 60.0, 505.0, 495.0],
            "pct_counts_mt": [2.0, 3.0, 2.5, 40.0, 2.2, 3.1, 2.8],
            "pct_counts_ribo": [20.0, 21.0, 19.0, 22.0, 20.5, 35.0, 20.1],
            "pct_counts_hb": [0.0, 0.0, 0.0, 0.0, 0.3, 0.0, 0.0],
            "predicted_doublet": [False, False, True, False, False, False, False],
        },
        index=cell_names(7),
    )


@pytest.mark.parametrize("t", qc.QC_MULTIPLIERS)
def test_flags_follow_median_mad_rules(t):
    table = metric_table()
    thresholds = qc.fit_thresholds(qc.QCMetrics(table, {}, "obs"))
    flags = qc.qc_flags(table, thresholds, t)
    assert list(flags.columns) == [f"qc_{m}" for m in qc.QC_METRICS]
    for metric in qc.QC_METRICS[:-1]:
        values = table[metric].to_numpy()
        med = np.median(values)
        mad = np.median(np.abs(values - med))
        assert thresholds.medians[metric] == pytest.approx(med)
        assert thresholds.mads[metric] == pytest.approx(mad)
        lower = metric in ("UMI_count", "ngenes")
        expected = values < med - t * mad if lower else values > med + t * mad
        np.testing.assert_array_equal(flags[f"qc_{metric}"], expected)
    assert thresholds.mads["pct_counts_hb"] == 0.0
    np.testing.assert_array_equal(flags["qc_pct_counts_hb"], table["pct_counts_hb"] > 0)
    np.testing.assert_array_equal(flags["qc_predicted_doublet"], table["predicted_doublet"])
    expected_total = flags.to_numpy().any(axis=1)
    np.testing.assert_array_equal(qc.total_qc(flags), expected_total.astype(np.uint8))
    assert qc.total_qc(flags).dtype == np.uint8


def test_value_equal_to_threshold_passes():
    thresholds = qc.QCThresholds(
        medians={"UMI_count": 100.0, "pct_counts_mt": 5.0},
        mads={"UMI_count": 10.0, "pct_counts_mt": 1.0},
    )
    table = pd.DataFrame({"UMI_count": [70.0, 69.0, 71.0], "pct_counts_mt": [8.0, 8.5, 7.0]})
    flags = qc.qc_flags(table, thresholds, 3)
    np.testing.assert_array_equal(flags["qc_UMI_count"], [False, True, False])
    np.testing.assert_array_equal(flags["qc_pct_counts_mt"], [False, True, False])


def test_real_thresholds_score_generated_cells():
    """Thresholds fitted on real cells, applied unchanged to other cells' metrics."""
    real = metric_table()
    thresholds = qc.fit_thresholds(qc.QCMetrics(real, {}, "obs"))
    generated = pd.DataFrame({"UMI_count": [10_000.0, 10.0], "pct_counts_mt": [1.0, 99.0]})
    flags = qc.qc_flags(generated, thresholds, 3)
    assert list(flags.columns) == ["qc_UMI_count", "qc_pct_counts_mt"]
    np.testing.assert_array_equal(qc.total_qc(flags), [0, 1])
    assert qc.pass_rate(flags) == 0.5


def test_thresholds_round_trip_through_json():
    thresholds = qc.fit_thresholds(qc.QCMetrics(metric_table(), {}, "obs"))
    d = json.loads(json.dumps(thresholds.to_dict()))
    assert qc.QCThresholds.from_dict(d) == thresholds
    for t in qc.QC_MULTIPLIERS:
        assert d["thresholds"][str(t)]["UMI_count"] == thresholds.threshold("UMI_count", t)


def test_pass_rate_counts_passing_cells():
    all_pass = pd.DataFrame({"qc_UMI_count": [False] * 4, "qc_ngenes": [False] * 4})
    assert qc.pass_rate(all_pass) == 1.0
    most_fail = pd.DataFrame({"qc_UMI_count": [True] * 9 + [False], "qc_ngenes": [False] * 10})
    assert qc.pass_rate(most_fail) == pytest.approx(0.1)
    assert qc.pass_rate(pd.DataFrame({"qc_ngenes": [True] * 3})) == 0.0
    with pytest.raises(DataError, match="no cells"):
        qc.pass_rate(pd.DataFrame({"qc_ngenes": pd.Series([], dtype=bool)}))


def test_fit_thresholds_rejects_zero_cells():
    empty = qc.QCMetrics(metric_table().iloc[:0], {}, "obs")
    with pytest.raises(DataError, match="no cells"):
        qc.fit_thresholds(empty)


def test_scrublet_finds_planted_heterotypic_doublets():
    """1,500 cells + 3,000 simulated doublets pass 4,096, where scanpy's kNN changes code path."""
    rng = np.random.default_rng(0)
    n_cells, n_genes = 1500, 200
    program = np.where(np.arange(n_genes) < n_genes // 2, 2.0, 0.1)
    is_first_type = rng.random(n_cells) < 0.5
    counts = rng.poisson(np.where(is_first_type[:, None], program, program[::-1]))
    counts = counts.astype(np.float32)
    planted = np.arange(150)
    first = rng.choice(np.flatnonzero(is_first_type), size=len(planted))
    second = rng.choice(np.flatnonzero(~is_first_type), size=len(planted))
    counts[planted] = counts[first] + counts[second]
    metrics = qc.compute_qc_metrics(
        sp.csr_matrix(counts), scrublet_genes(n_genes), cell_names(n_cells), seed=0
    )
    assert "predicted_doublet" not in metrics.unavailable, metrics.unavailable
    called = metrics.table["predicted_doublet"].to_numpy()
    # Scrublet's automatic threshold is conservative on two clean cell types (it sits at the
    # 90th percentile of planted scores here), so the test asks for enrichment, not recall.
    planted_rate, other_rate = called[planted].mean(), np.delete(called, planted).mean()
    assert planted_rate >= 0.1
    assert planted_rate >= 10 * other_rate, (planted_rate, other_rate)
