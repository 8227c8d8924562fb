import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cradle_jax.adapters import norman
from cradle_jax.adapters.contract import check_contract, describe
from cradle_jax.data.errors import DataError
from cradle_jax.data.qc import QC_METRICS
from tests.adapters.conftest import GENES, cell_names, load_prepared, poisson_counts, qc_columns

TARGETS = ["ARID1A", "CEBPA", "KLF1", "SPI1"]
# (guide_identity, genes whose guide_* column is 1, the label we expect, cells)
GROUPS = [
    ("NegCtrl10_NegCtrl0__NegCtrl10_NegCtrl0", [], "non-targeting", 6),
    ("NegCtrl1_NegCtrl0__NegCtrl1_NegCtrl0", [], "non-targeting", 3),
    ("ARID1A_NegCtrl0__ARID1A_NegCtrl0", ["ARID1A"], "ARID1A", 5),
    ("NegCtrl0_ARID1A__NegCtrl0_ARID1A", ["ARID1A"], "ARID1A", 3),
    ("CEBPA_NegCtrl0__CEBPA_NegCtrl0", ["CEBPA"], "CEBPA", 6),
    ("KLF1_NegCtrl0__KLF1_NegCtrl0", ["KLF1"], "KLF1", 6),
    ("SPI1_NegCtrl0__SPI1_NegCtrl0", ["SPI1"], "SPI1", 6),
    ("CEBPA_KLF1__CEBPA_KLF1", ["CEBPA", "KLF1"], "CEBPA+KLF1", 6),
    ("SPI1_KLF1__SPI1_KLF1", ["KLF1", "SPI1"], "KLF1+SPI1", 6),
    ("ARID1A_CEBPA__ARID1A_CEBPA", ["ARID1A", "CEBPA"], "ARID1A+CEBPA", 6),
]


def norman_input(with_qc: bool = False) -> tuple[ad.AnnData, list[str]]:
    """sc-pert layout: raw counts in layers['counts'], normalised X, float guide_* columns."""
    rows = [(identity, on, label) for identity, on, label, n in GROUPS for _ in range(n)]
    n = len(rows)
    counts = poisson_counts(n)
    obs = pd.DataFrame(
        {
            "guide_identity": [identity for identity, _, _ in rows],
            "UMI_count": np.arange(n, dtype=float) + 30,  # guide UMIs in sc-pert, not ours
            "good_coverage": True,
            **{f"guide_{t}": [float(t in on) for _, on, _ in rows] for t in TARGETS},
            "guide_ids": [",".join(on) for _, on, _ in rows],
        },
        index=cell_names(n),
    )
    if with_qc:
        for metric, values in qc_columns(counts).items():
            obs[metric] = values.to_numpy()
    adata = ad.AnnData(X=sp.csr_matrix(np.log1p(counts)), obs=obs, var=pd.DataFrame(index=GENES))
    adata.layers["counts"] = sp.csr_matrix(counts)
    return adata, [label for _, _, label in rows]


def test_labels_counts_and_loading(tmp_path):
    adata, expected = norman_input()
    prepared = norman.prepare(adata)
    assert prepared.obs["perturbation"].astype(str).tolist() == expected
    np.testing.assert_array_equal(prepared.X.toarray(), adata.layers["counts"].toarray())
    assert prepared.var_names.tolist() == GENES
    assert list(prepared.obs_names) == list(adata.obs_names)
    identity = adata.obs["guide_identity"].tolist()
    assert prepared.obs["guide_identity"].astype(str).tolist() == identity
    # the original's label, for its reference groups: controls share one
    assert prepared.obs["treatment"].astype(str).tolist() == [
        "non-targeting" if label == "non-targeting" else name
        for name, label in zip(identity, expected, strict=True)
    ]
    # a partial QC set (here sc-pert's guide-UMI count) is not carried
    assert "UMI_count" not in prepared.obs
    data = load_prepared(prepared, tmp_path, split="combinations", reference_group_key="treatment")
    assert data.vocabulary.singles == tuple(TARGETS)
    assert data.qc_metrics.source == "computed"
    assert data.summary()["split_cells"]["test"] > 0


def test_qc_columns_are_carried_when_all_six_are_there(tmp_path):
    adata, _ = norman_input(with_qc=True)
    prepared = norman.prepare(adata)
    for metric in QC_METRICS:
        np.testing.assert_array_equal(prepared.obs[metric].to_numpy(), adata.obs[metric].to_numpy())
    assert load_prepared(prepared, tmp_path).qc_metrics.source == "obs"


def test_a_partial_qc_set_is_carried_without_the_guide_umi_count(tmp_path):
    adata, _ = norman_input(with_qc=True)
    adata.obs["UMI_count"] = np.arange(adata.n_obs, dtype=float) + 30  # sc-pert's guide UMIs
    adata.obs = adata.obs.drop(columns=["pct_counts_ribo", "predicted_doublet"])
    prepared = norman.prepare(adata)
    carried = [m for m in QC_METRICS if m in prepared.obs.columns]
    assert carried == ["ngenes", "pct_counts_mt", "pct_counts_hb"]
    np.testing.assert_array_equal(prepared.obs["ngenes"], adata.obs["ngenes"])
    summary = check_contract(prepared)
    assert "ngenes, pct_counts_mt, pct_counts_hb carried in obs, the others computed" in (
        describe(summary)
    )
    sources = load_prepared(prepared, tmp_path).qc_metrics.criterion_sources()
    assert sources["UMI_count"] == "computed"
    assert sources["ngenes"] == "obs:ngenes"


def test_identity_that_disagrees_with_the_guide_columns_is_an_error():
    adata, _ = norman_input()
    adata.obs.loc["cell20", "guide_identity"] = "KLF1_NegCtrl0__KLF1_NegCtrl0"  # a CEBPA cell
    with pytest.raises(DataError, match=r"guide_identity disagrees .* 1 cells .*'cell20'"):
        norman.prepare(adata)


def test_missing_guide_columns_and_bad_counts_are_errors():
    adata, _ = norman_input()
    no_guides = adata[:, :].copy()
    no_guides.obs = no_guides.obs[["guide_identity", "guide_ids"]]
    with pytest.raises(DataError, match="Norman adapter: obs has no guide_\\* columns"):
        norman.prepare(no_guides)
    adata.layers["counts"] = adata.X  # normalised values where raw counts belong
    with pytest.raises(DataError, match=r"Norman adapter: counts in layers\['counts'\].*non-int"):
        norman.prepare(adata)


def test_guide_column_that_is_not_zero_one_is_an_error():
    adata, _ = norman_input()
    adata.obs["guide_SPI1"] = adata.obs["guide_SPI1"] * 2
    with pytest.raises(DataError, match="guide column 'guide_SPI1' must hold 0/1"):
        norman.prepare(adata)
