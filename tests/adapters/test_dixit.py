import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cradle_jax.adapters import dixit
from cradle_jax.data.errors import DataError
from tests.adapters.conftest import GENES, cell_names, load_prepared, poisson_counts, qc_columns

TARGETS = ["CREB1", "EGR1", "ELK1", "YY1"]
# (combined_guides, the label we expect or None when the cell is dropped, cells)
GROUPS = [
    ("", "non-targeting", 4),
    (None, "non-targeting", 2),
    ("INTERGENIC1144056", "non-targeting", 4),
    ("INTERGENIC216151_INTERGENIC393453", "non-targeting", 2),
    ("EGR1", "EGR1", 6),
    ("EGR1_INTERGENIC393453", "EGR1", 2),
    ("ELK1", "ELK1", 6),
    ("CREB1", "CREB1", 6),
    ("YY1", "YY1", 6),
    ("EGR1_ELK1", "EGR1+ELK1", 4),
    ("ELK1_EGR1", "EGR1+ELK1", 2),
    ("CREB1_YY1", "CREB1+YY1", 6),
    ("ELK1_YY1", "ELK1+YY1", 6),
    ("CREB1_EGR1_ELK1", None, 3),
]


def dixit_input() -> tuple[ad.AnnData, list[str | None]]:
    """Authors' layout: combined_guides, one bool column per target and per intergenic guide,
    other underscore-free columns (`cluster`, `batch`, `score`) that are no guides, QC columns."""
    rows = [(value, label) for value, label, n in GROUPS for _ in range(n)]
    n = len(rows)
    counts = poisson_counts(n, seed=1)
    named = [set((value or "").split("_")) for value, _ in rows]
    obs = pd.DataFrame(
        {
            "cluster": "tfs_highmoi",
            "combined_guides": [value for value, _ in rows],
            "batch": np.arange(n) % 2,
            "score": np.linspace(0, 1, n),
            **{t: [t in s for s in named] for t in TARGETS},
            "INTERGENIC393453": ["INTERGENIC393453" in s for s in named],
        },
        index=cell_names(n),
    )
    for metric, values in qc_columns(counts).items():
        obs[metric] = values.to_numpy()
    adata = ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=GENES))
    return adata, [label for _, label in rows]


def test_labels_dropped_cells_and_loading(tmp_path, caplog_info):
    adata, expected = dixit_input()
    prepared = dixit.prepare(adata)
    kept = [label is not None for label in expected]
    assert prepared.obs["perturbation"].astype(str).tolist() == [e for e in expected if e]
    assert list(prepared.obs_names) == list(adata.obs_names[kept])
    np.testing.assert_array_equal(prepared.X.toarray(), adata.X.toarray()[kept])
    np.testing.assert_array_equal(prepared.obs["ngenes"], adata.obs["ngenes"][kept])
    assert prepared.obs["treatment"].astype(str).tolist() == [
        "non-targeting" if label == "non-targeting" else value
        for (value, label, n) in GROUPS
        for _ in range(n)
        if label
    ]
    assert prepared.uns["cradle_jax_prepare"]["dropped_cells"] == {"more than 2 guides": 3}
    assert "dropped 3 cells: more than 2 guides" in caplog_info.text
    assert "agrees with 4 target columns" in caplog_info.text
    data = load_prepared(prepared, tmp_path, split="combinations")
    assert data.vocabulary.singles == tuple(TARGETS)
    assert data.qc_metrics.source == "obs"


def test_target_column_that_disagrees_is_an_error():
    adata, _ = dixit_input()
    adata.obs.loc["cell20", "EGR1"] = not adata.obs.loc["cell20", "EGR1"]
    with pytest.raises(DataError, match="obs column 'EGR1' disagrees with combined_guides in 1"):
        dixit.prepare(adata)


def test_missing_column_and_unreadable_values_are_errors():
    adata, _ = dixit_input()
    with pytest.raises(DataError, match="Dixit adapter: obs has no 'combined_guides' column"):
        dixit.prepare(ad.AnnData(adata.X, obs=adata.obs.drop(columns="combined_guides")))
    adata.obs["combined_guides"] = adata.obs["combined_guides"].replace("EGR1", "sgEGR1_2")
    with pytest.raises(DataError, match="piece '2' is not a gene name"):
        dixit.prepare(adata)
