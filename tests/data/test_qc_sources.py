"""Where each QC metric comes from (docs/data.md#qc-metrics): the metrics obs has as given, the
rest computed, columns renamed by data.qc_columns, and the matrix-genes basis of generated cells
(docs/metrics.md#qc-basis)."""

import dataclasses
import json
import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from cradle_jax.config import data_config
from cradle_jax.data import qc, qc_sources
from cradle_jax.data.counts import InMemoryCounts
from cradle_jax.data.errors import DataError
from cradle_jax.data.qc_sources import (
    obs_qc_columns,
    parse_qc_columns,
    qc_metrics_from_obs,
    qc_metrics_of,
)

GENES = ["MT-CO1", "MT-ND1", "RPL3", "RPS6", "HBB", "GAPDH", "ACTB", "GENE7", "GENE8", "GENE9"]


def subset_file(n_cells: int = 60, seed: int = 0) -> ad.AnnData:
    """A gene-subset file: obs carries whole-transcriptome UMI_count and ngenes (far above what
    its 10 genes hold), the other metrics are left to compute."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(4.0, size=(n_cells, len(GENES))).astype(np.float32)
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(n_cells)])
    obs["UMI_count"] = counts.sum(1) * 20 + rng.integers(0, 50, n_cells)
    obs["ngenes"] = rng.integers(900, 1500, n_cells).astype(float)
    return ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=GENES))


def scanpy_metrics(adata: ad.AnnData) -> pd.DataFrame:
    var = pd.DataFrame(
        {
            "mt": [g.startswith("MT-") for g in GENES],
            "ribo": [g[:3] in ("RPL", "RPS") for g in GENES],
            "hb": [g == "HBB" for g in GENES],
        },
        index=GENES,
    )
    plain = ad.AnnData(X=adata.X.copy(), obs=pd.DataFrame(index=adata.obs_names), var=var)
    table, _ = sc.pp.calculate_qc_metrics(
        plain, qc_vars=["mt", "ribo", "hb"], percent_top=None, log1p=False, inplace=False
    )
    return table


def load_metrics(adata: ad.AnnData, matrix_basis: bool = False, **settings) -> qc.QCMetrics:
    """The metrics as loaded, with the generated cells' basis beside them if `matrix_basis`."""
    config = data_config()
    config.update({"qc_doublets": False, **settings})
    counts = InMemoryCounts(adata.X)
    metrics = qc_metrics_of(adata, counts, config, 0)
    if not matrix_basis:
        return metrics
    basis = qc_sources.matrix_basis(counts, adata.var_names, metrics, config, 0)
    return dataclasses.replace(metrics, matrix=basis)


def test_partial_obs_metrics_are_used_as_given_and_the_rest_computed():
    adata = subset_file()
    metrics = load_metrics(adata)
    table = metrics.table
    np.testing.assert_array_equal(table["UMI_count"], adata.obs["UMI_count"])
    np.testing.assert_array_equal(table["ngenes"], adata.obs["ngenes"])
    expected = scanpy_metrics(adata)
    for name in ("mt", "ribo", "hb"):
        np.testing.assert_allclose(table[f"pct_counts_{name}"], expected[f"pct_counts_{name}"])
    assert metrics.source == "obs+computed"
    assert metrics.criterion_sources() == {
        "UMI_count": "obs:UMI_count",
        "ngenes": "obs:ngenes",
        "pct_counts_mt": "computed",
        "pct_counts_ribo": "computed",
        "pct_counts_hb": "computed",
        "predicted_doublet": "unavailable: doublet calling switched off",
    }
    assert metrics.matrix is None  # fitted where it is used, not at load


def test_all_six_in_obs_are_read_without_computing():
    adata = subset_file()
    for metric in ("pct_counts_mt", "pct_counts_ribo", "pct_counts_hb"):
        adata.obs[metric] = 1.0
    adata.obs["predicted_doublet"] = "False"
    metrics = load_metrics(adata)
    assert metrics.source == "obs"
    assert set(metrics.criterion_sources().values()) == {f"obs:{m}" for m in qc.QC_METRICS}


def test_renamed_columns_come_from_the_config_field():
    adata = subset_file()
    adata.obs = adata.obs.rename(columns={"UMI_count": "total_counts", "ngenes": "n_genes"})
    plain = load_metrics(adata)  # the renamed columns are not found by name: all computed
    assert plain.source == "computed"
    renamed = load_metrics(adata, qc_columns="UMI_count=total_counts, ngenes=n_genes")
    np.testing.assert_array_equal(renamed.table["UMI_count"], adata.obs["total_counts"])
    assert renamed.criterion_sources()["UMI_count"] == "obs:total_counts"
    assert renamed.criterion_sources()["ngenes"] == "obs:n_genes"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("UMI=total_counts", r"unknown QC metric\(s\) 'UMI'; the metrics are UMI_count, ngenes"),
        ("UMI_count", r"'UMI_count' is not metric=column"),
        ("UMI_count=a,UMI_count=b", r"names 'UMI_count' more than once"),
        ("ngenes=n_genes,pct_counts_mt=mito", r"lacks: 'n_genes' \(for ngenes\), 'mito' \(for"),
    ],
)
def test_bad_qc_columns_are_one_line_errors_naming_them(spec, message):
    with pytest.raises(DataError, match=message) as caught:
        obs_qc_columns(["UMI_count", "perturbation"], spec)
    assert "\n" not in str(caught.value)


def test_qc_columns_parse_text_and_mappings():
    assert parse_qc_columns(None) == parse_qc_columns("") == {}
    assert parse_qc_columns(" UMI_count = total ,ngenes=n ") == {
        "UMI_count": "total",
        "ngenes": "n",
    }
    assert parse_qc_columns({"UMI_count": "total"}) == {"UMI_count": "total"}
    assert obs_qc_columns(["ngenes", "total", "x"], "UMI_count=total") == {
        "UMI_count": "total",
        "ngenes": "ngenes",
    }


def test_obs_metrics_are_validated_one_column_at_a_time():
    obs = pd.DataFrame({"UMI_count": [1.0, np.nan], "flag": ["yes", "no"]}, index=["a", "b"])
    with pytest.raises(DataError, match=r"'UMI_count' has 1 missing or infinite values.*'b'"):
        qc_metrics_from_obs(obs)
    with pytest.raises(DataError, match=r"obs column 'flag' must be boolean; cell 'a' has 'yes'"):
        qc_metrics_from_obs(obs, {"predicted_doublet": "flag"})
    text = pd.DataFrame({"ngenes": ["1", "2"]})
    with pytest.raises(DataError, match="'ngenes' must be numeric"):
        qc_metrics_from_obs(text)
    assert qc_metrics_from_obs(pd.DataFrame({"perturbation": ["A"]})) is None


def test_the_matrix_basis_recomputes_the_obs_metrics_over_the_matrix_genes():
    adata = subset_file()
    metrics = load_metrics(adata, matrix_basis=True)
    np.testing.assert_array_equal(metrics.table["UMI_count"], adata.obs["UMI_count"])
    expected = scanpy_metrics(adata)
    np.testing.assert_array_equal(metrics.matrix.table["UMI_count"], expected["total_counts"])
    np.testing.assert_array_equal(metrics.matrix.table["ngenes"], expected["n_genes_by_counts"])
    thresholds = qc.fit_thresholds(metrics)
    basis = thresholds.for_generated_cells()
    assert basis is thresholds.generated_basis
    assert thresholds.medians["UMI_count"] == np.median(adata.obs["UMI_count"])
    assert basis.medians["UMI_count"] == np.median(expected["total_counts"])
    assert basis.medians["pct_counts_mt"] == thresholds.medians["pct_counts_mt"]  # computed: one
    assert thresholds.sources["UMI_count"] == "obs:UMI_count"
    assert basis.sources["UMI_count"] == "computed"


def test_thresholds_with_their_sources_and_basis_round_trip_and_old_records_load():
    thresholds = qc.fit_thresholds(load_metrics(subset_file(), matrix_basis=True))
    d = json.loads(json.dumps(thresholds.to_dict()))
    assert d["sources"]["ngenes"] == "obs:ngenes"
    assert qc.QCThresholds.from_dict(d) == thresholds
    del d["sources"], d["generated_basis"]  # written before they were recorded
    old = qc.QCThresholds.from_dict(d)
    assert old.sources == {}
    assert old.for_generated_cells() is old


def test_a_file_without_obs_metrics_has_one_basis():
    adata = subset_file()
    adata.obs = adata.obs.drop(columns=["UMI_count", "ngenes"])
    metrics = load_metrics(adata, matrix_basis=True)
    assert metrics.source == "computed"
    assert metrics.matrix is None
    thresholds = qc.fit_thresholds(metrics)
    assert thresholds.for_generated_cells() is thresholds


def test_an_obs_metric_the_matrix_genes_cannot_give_is_logged_for_generated_cells(caplog):
    adata = subset_file()[:, 2:].copy()  # no MT- gene left
    adata.obs["pct_counts_mt"] = 4.0
    with caplog.at_level(logging.WARNING):
        metrics = load_metrics(adata, matrix_basis=True)
    assert "pct_counts_mt" in metrics.table.columns  # the real cells keep their obs values
    assert "pct_counts_mt" in metrics.matrix.unavailable
    lines = [r.getMessage() for r in caplog.records if "pct_counts_mt comes from" in r.getMessage()]
    assert lines == [
        "QC metric pct_counts_mt comes from obs:pct_counts_mt and cannot be computed over the "
        "matrix's genes (no gene matches ^MT-): generated cells are not judged by it"
    ]


def test_a_doublet_call_from_obs_gets_scrublet_over_the_matrix_genes_for_generated_cells():
    from tests.data.test_qc import random_counts, scrublet_genes

    counts = random_counts(300, 200, 1)
    obs = pd.DataFrame({"predicted_doublet": False}, index=[f"c{i}" for i in range(300)])
    adata = ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=scrublet_genes(200)))
    metrics = load_metrics(adata, matrix_basis=True, qc_doublets=True)
    assert not metrics.table["predicted_doublet"].any()  # the real cells keep the obs call
    assert metrics.doublet_threshold is None
    assert metrics.matrix.doublet_threshold is not None  # Scrublet ran on the matrix's genes
    thresholds = qc.fit_thresholds(metrics)
    assert thresholds.for_generated_cells().doublet_score == metrics.matrix.doublet_threshold
    switched_off = qc.fit_thresholds(load_metrics(adata, matrix_basis=True))
    basis = switched_off.for_generated_cells()
    assert not basis.doublets
    assert basis.sources["predicted_doublet"] == "unavailable: doublet calling switched off"


def test_the_matrix_basis_of_a_large_file_is_fitted_on_a_seeded_sample(monkeypatch):
    """Above BASIS_CELLS cells the basis is computed for that many cells drawn by the seed
    (sorted row positions), so a million-cell file with every metric in obs is not scored
    through scanpy and Scrublet at each load; the sampled rows hold their cells' values."""
    monkeypatch.setattr(qc_sources, "BASIS_CELLS", 25)
    adata = subset_file(n_cells=200)
    adata.obs["pct_counts_mt"] = 1.0  # every metric from obs: nothing else is computed
    adata.obs["pct_counts_ribo"] = 1.0
    adata.obs["pct_counts_hb"] = 0.0
    adata.obs["predicted_doublet"] = False
    metrics = load_metrics(adata, matrix_basis=True)
    rows = metrics.matrix.table.index.to_numpy()
    assert len(rows) == 25
    assert np.all(np.diff(rows) > 0)
    expected = scanpy_metrics(adata).iloc[rows]
    np.testing.assert_array_equal(metrics.matrix.table["UMI_count"], expected["total_counts"])
    np.testing.assert_array_equal(metrics.table["UMI_count"], adata.obs["UMI_count"])
    again = load_metrics(adata, matrix_basis=True)
    np.testing.assert_array_equal(again.matrix.table.index, rows)  # the seed draws them
    basis = qc.fit_thresholds(metrics).for_generated_cells()
    assert basis.medians["UMI_count"] == np.median(expected["total_counts"])
