import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cradle_jax.adapters import adamson
from cradle_jax.data import qc
from cradle_jax.data.errors import DataError
from cradle_jax.data.qc import QC_METRICS
from tests.adapters.conftest import GENES, cell_names, load_prepared, poisson_counts, qc_columns

# (perturbation, the label we expect or None when the cell is dropped, cells)
GROUPS = [
    ("62(mod)_pBA581", "non-targeting", 8),
    ("63(mod)_pBA582", "non-targeting", 4),
    ("SPI1_pDS255", "SPI1", 8),
    ("XBP1_pDS024", "XBP1", 8),
    ("ATF6_PERK_pMJ152", "ATF6", 8),
    ("*", None, 4),
]
RARE = ["RARE1", "RARE2", "EDGE20"]  # detected in 5, 0 and 20 cells (3 of them '*' cells)
MISSING_READS = ["cell3", "cell12"]  # NaN in an obs column: dropped


def adamson_input(with_qc: bool = False) -> tuple[ad.AnnData, list[str | None]]:
    """scPerturb layout: raw counts in X, obs `perturbation` with `*` and `(mod)` controls."""
    rows = [(p, label) for p, label, n in GROUPS for _ in range(n)]
    n = len(rows)
    counts = np.zeros((n, len(GENES) + len(RARE)), dtype=np.float32)
    counts[:, : len(GENES)] = poisson_counts(n, seed=3)
    counts[:5, len(GENES)] = 2
    counts[n - 20 :, len(GENES) + 2] = 1  # the last 20 cells: 16 + the 4 '*' cells
    obs = pd.DataFrame(
        {"perturbation": [p for p, _ in rows], "read count": np.full(n, 100.0)},
        index=cell_names(n),
    )
    obs.loc[MISSING_READS, "read count"] = np.nan
    if with_qc:
        for metric, values in qc_columns(counts).items():
            obs[metric] = values.to_numpy()
    adata = ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=GENES + RARE))
    expected = [
        None if c in MISSING_READS else label for c, (_, label) in zip(obs.index, rows, strict=True)
    ]
    return adata, expected


def test_labels_dropped_cells_and_genes_and_loading(tmp_path):
    adata, expected = adamson_input()
    prepared = adamson.prepare(adata)
    kept = np.array([label is not None for label in expected])
    assert prepared.obs["perturbation"].astype(str).tolist() == [e for e in expected if e]
    assert prepared.var_names.tolist() == [*GENES, "EDGE20"]
    np.testing.assert_array_equal(
        prepared.X.toarray(), adata.X.toarray()[kept][:, [*range(20), 22]]
    )
    provenance = prepared.uns["cradle_jax_prepare"]
    assert provenance["dropped_cells"] == {
        "perturbation '*'": 4,
        "missing values in obs (read count 2)": 2,
    }
    assert provenance["dropped_genes"] == {"detected in fewer than 20 cells": 2}
    # Scrublet needs 100 cells: the doublet call is not written, the loader computes it
    assert [m for m in QC_METRICS if m in prepared.obs.columns] == list(QC_METRICS[:-1])
    data = load_prepared(prepared, tmp_path)
    assert data.qc_metrics.criterion_sources()["ngenes"] == "obs:ngenes"
    assert data.vocabulary.singles == ("ATF6", "SPI1", "XBP1")


def test_qc_metrics_are_computed_on_all_genes_before_the_gene_filter(monkeypatch):
    def no_doublets(adata, seed, threshold):
        adata.obs["predicted_doublet"] = False

    monkeypatch.setattr(qc, "_run_scrublet", no_doublets)
    adata, expected = adamson_input()
    prepared = adamson.prepare(adata)
    kept = np.array([label is not None for label in expected])
    all_genes = adata.X.toarray()[kept]
    np.testing.assert_array_equal(prepared.obs["UMI_count"], all_genes.sum(1))
    assert (prepared.obs["UMI_count"] > np.asarray(prepared.X.sum(1)).ravel()).any()
    assert not prepared.obs["predicted_doublet"].any()


def test_qc_columns_in_obs_are_carried(tmp_path):
    adata, expected = adamson_input(with_qc=True)
    prepared = adamson.prepare(adata)
    kept = np.array([label is not None for label in expected])
    for metric in QC_METRICS:
        np.testing.assert_array_equal(prepared.obs[metric], adata.obs[metric].to_numpy()[kept])
    assert load_prepared(prepared, tmp_path).qc_metrics.source == "obs"


def test_missing_column_and_empty_result_are_errors():
    adata, _ = adamson_input(with_qc=True)
    adata.obs["perturbation"] = "*"
    with pytest.raises(
        DataError, match=r"result would be empty \(0 cells .*40 cells \(perturbation '\*'\)"
    ):
        adamson.prepare(adata)
    adata.obs = adata.obs.drop(columns="perturbation")
    with pytest.raises(DataError, match="Adamson adapter: obs has no 'perturbation' column"):
        adamson.prepare(adata)
