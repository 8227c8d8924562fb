"""Tiny hand-built inputs in the papers' layouts, and loading a prepared file as training would."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cradle_jax.config import data_config
from cradle_jax.data.dataset import PerturbData, load_perturb_data

GENES = ["MT-CO1", "MT-ND1", "RPL3", "RPS6", "HBB"] + [f"GENE{j}" for j in range(5, 20)]


def poisson_counts(n_cells: int, n_genes: int = len(GENES), seed: int = 0) -> np.ndarray:
    """Raw counts (n_cells, n_genes) float32, Poisson(3), from default_rng(seed)."""
    return np.random.default_rng(seed).poisson(3.0, size=(n_cells, n_genes)).astype(np.float32)


def qc_columns(counts: np.ndarray) -> pd.DataFrame:
    """The six QC metric columns, as a file that ships them would have them."""
    total = counts.sum(1)
    return pd.DataFrame(
        {
            "UMI_count": total,
            "ngenes": (counts > 0).sum(1).astype(float),
            "pct_counts_mt": 100 * counts[:, :2].sum(1) / total,
            "pct_counts_ribo": 100 * counts[:, 2:4].sum(1) / total,
            "pct_counts_hb": 100 * counts[:, 4] / total,
            "predicted_doublet": np.arange(len(counts)) % 7 == 0,
        }
    )


def cell_names(n: int) -> list[str]:
    return [f"cell{i}" for i in range(n)]


def load_prepared(
    prepared: ad.AnnData, tmp_path, split: str = "random", **overrides
) -> PerturbData:
    """Write `prepared`, read it back and load it with the data pipeline (no Scrublet)."""
    path = tmp_path / "prepared.h5ad"
    prepared.write_h5ad(path)
    config = data_config()
    config.update(qc_doublets=False, split=split, **overrides)
    return load_perturb_data(path, config, seed=0)


@pytest.fixture
def caplog_info(caplog):
    caplog.set_level("INFO", logger="cradle_jax.adapters")
    return caplog
