"""Tiny inputs for the reliability tests, built by the tests themselves (no stored files).

Every training dataset here has 16 genes and the singles A and B (plus their pair), so the runs
share one shape and JAX compiles their steps once.
"""

from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

from tests.conftest import make_adata

LABELS = ("non-targeting", "A", "B", "A+B")
N_GENES = 16
# A tiny model and one short epoch: 160 cells give 102 training cells, 4 batches of 32.
FAST = {"train.batch_size": 32, "train.max_epochs": 1, "train.iwelbo_particles": 0}


def tiny_adata(n_each: int = 40, labels: tuple[str, ...] = LABELS, **kwargs) -> ad.AnnData:
    """`n_each` cells of each label, Poisson counts, QC metrics in obs (about 30 % fail)."""
    return make_adata([label for label in labels for _ in range(n_each)], N_GENES, **kwargs)


def with_counts(adata: ad.AnnData, counts: np.ndarray) -> ad.AnnData:
    """`adata` with X replaced by `counts` (CSR, dtype kept)."""
    adata.X = sp.csr_matrix(counts)
    return adata


def without_fail_cells(adata: ad.AnnData) -> ad.AnnData:
    """Every QC metric equal in all cells: the MAD rules fail nobody (strict inequalities)."""
    for metric, value in {
        "UMI_count": 100.0,
        "ngenes": 10.0,
        "pct_counts_mt": 5.0,
        "pct_counts_ribo": 20.0,
        "pct_counts_hb": 0.0,
    }.items():
        adata.obs[metric] = value
    adata.obs["predicted_doublet"] = False
    return adata


def write(adata: ad.AnnData, path: Path) -> Path:
    adata.write_h5ad(path)
    return path
