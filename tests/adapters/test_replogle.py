import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cradle_jax.adapters import replogle
from cradle_jax.config import data_config
from cradle_jax.data.dataset import with_generated_basis
from cradle_jax.data.errors import DataError
from tests.adapters.conftest import GENES, cell_names, load_prepared, poisson_counts

# (sgID_AB, gene, the label we expect, cells)
GROUPS = [
    ("non-targeting_03234|non-targeting_03212", "non-targeting", "non-targeting", 5),
    ("non-targeting_00011|non-targeting_01830", "non-targeting", "non-targeting", 5),
    (
        "AARS_+_70323496.23-P1P2|AARS_-_70323362.23-P1P2",
        "AARS",
        "AARS_plus_70323496.23-P1P2|AARS_-_70323362.23-P1P2",
        6,
    ),
    (
        "AARS_+_70323100.23-P1|AARS_+_70323111.23-P1",
        "AARS",
        "AARS_plus_70323100.23-P1|AARS_plus_70323111.23-P1",
        6,
    ),
    ("POLR2A_-_7387685.23-P1|POLR2A_-_7387700.23-P1", "POLR2A", None, 6),
]
SYMBOLS = [*GENES[:-1], "GENE7"]  # a repeated symbol, as var['gene_name'] has them


def replogle_input() -> tuple[ad.AnnData, list[str]]:
    """SAMS-VAE layout: dense counts in X, var indexed by Ensembl id with `gene_name`."""
    rows = [(sg, gene, label or sg) for sg, gene, label, n in GROUPS for _ in range(n)]
    n = len(rows)
    obs = pd.DataFrame(
        {
            "sgID_AB": [sg for sg, _, _ in rows],
            "gene": [gene for _, gene, _ in rows],
            "UMI_count": np.full(n, 12000.0),  # over all genes of the screen, not ours
            "mitopercent": 0.05,
        },
        index=cell_names(n),
    )
    var = pd.DataFrame(
        {"gene_name": SYMBOLS, "chr": "chr1"},
        index=[f"ENSG{j:011d}" for j in range(len(SYMBOLS))],
    )
    return ad.AnnData(X=poisson_counts(n, seed=2), obs=obs, var=var), [r[2] for r in rows]


def test_labels_genes_and_loading(tmp_path):
    adata, expected = replogle_input()
    prepared = replogle.prepare(adata)
    assert prepared.obs["perturbation"].astype(str).tolist() == expected
    assert prepared.obs["gene"].astype(str).tolist() == adata.obs["gene"].tolist()
    assert prepared.obs["sgID_AB"].astype(str).tolist() == adata.obs["sgID_AB"].tolist()
    assert prepared.var_names.tolist() == [*GENES[:-1], "GENE7-1"]
    assert prepared.var["gene_id"].tolist() == adata.var_names.tolist()
    np.testing.assert_array_equal(prepared.X.toarray(), adata.X)
    # a partial QC set is carried: the loader uses it and computes the rest
    np.testing.assert_array_equal(prepared.obs["UMI_count"], adata.obs["UMI_count"])
    data = load_prepared(prepared, tmp_path, reference_group_key="gene")
    assert data.qc_metrics.criterion_sources()["UMI_count"] == "obs:UMI_count"
    assert data.qc_metrics.criterion_sources()["ngenes"] == "computed"
    config = data_config()
    config.qc_doublets = False  # as load_prepared
    basis = with_generated_basis(data, config, 0).qc_thresholds.for_generated_cells()
    assert basis.medians["UMI_count"] < 12000
    assert data.vocabulary.size == 3
    assert all("+" not in single for single in data.vocabulary.singles)


def test_missing_guide_pairs_are_errors():
    adata, _ = replogle_input()
    adata.obs.loc["cell3", "sgID_AB"] = np.nan
    with pytest.raises(DataError, match="sgID_AB has 1 missing values"):
        replogle.prepare(adata)
    adata.obs = adata.obs.drop(columns="sgID_AB")
    with pytest.raises(DataError, match="Replogle adapter: obs has no 'sgID_AB' column"):
        replogle.prepare(adata)


def test_only_control_cells_is_an_error():
    adata, _ = replogle_input()
    control = adata[adata.obs["gene"] == "non-targeting"].copy()
    with pytest.raises(DataError, match="only control cells are left"):
        replogle.prepare(control)
