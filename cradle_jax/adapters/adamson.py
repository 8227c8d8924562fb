"""Adamson et al. 2016 (CRISPRi unfolded-protein-response screen, K562) onto the data contract.

Input: scPerturb's `AdamsonWeissman2016_GSM2406681_10X010.h5ad` or the authors'
`adamson_qc.h5ad`. Raw counts come from `layers['counts']` when present, else from X.

The steps are the original's, in its order (docs/data.md#adapters):
1. QC metrics and Scrublet on all genes and all cells. The original computes them before any
   filtering, so a real cell's metrics include the genes dropped in step 2 (generated cells,
   scored later, only have the kept genes: docs/metrics.md#qc-basis). We keep that order:
   metrics already in obs (all six in the authors' file) are carried; the missing ones are
   computed here, on all genes, and written to obs. One that cannot be computed (Scrublet
   needs 100 cells) is not written, and the loader computes it on the kept genes.
2. Drop genes detected in fewer than 20 cells (counted over all cells, `*` cells included).
3. Drop cells whose perturbation is `*`.
4. Drop cells with a missing value in any obs column of the input (counted per column).
5. Label: `non-targeting` when the perturbation contains "(mod)", else the part before the
   first "_" (`SPI1_pDS255` -> `SPI1`).
"""

import logging

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cradle_jax.adapters import common
from cradle_jax.config import data_config
from cradle_jax.data.counts import InMemoryCounts
from cradle_jax.data.errors import DataError
from cradle_jax.data.qc import QC_METRICS
from cradle_jax.data.qc_sources import qc_metrics_of

log = logging.getLogger(__name__)

ADAPTER = "Adamson adapter"
PERTURBATION = "perturbation"
MIN_CELLS_PER_GENE = 20
QC_SEED = 0  # Scrublet's seed when the metrics are computed here


def prepare(adata: ad.AnnData) -> ad.AnnData:
    """A new AnnData: QC on all genes, rare genes and `*`/incomplete cells dropped, labels."""
    counts = common.raw_counts(adata, ADAPTER)
    obs = adata.obs
    if PERTURBATION not in obs.columns:
        raise DataError(f"{ADAPTER}: obs has no {PERTURBATION!r} column")
    qc = common.carried_qc(obs, ADAPTER)
    if qc is None or len(qc.columns) < len(QC_METRICS):
        qc = _qc_on_all_genes(adata, counts)

    detected = np.asarray((counts > 0).sum(axis=0)).ravel()
    keep_genes = detected >= MIN_CELLS_PER_GENE
    perturbation = obs[PERTURBATION]
    star = (perturbation.astype(str) == "*").to_numpy()
    missing, missing_note = _missing_values(obs, ~star)
    keep = ~star & ~missing

    labels = np.full(adata.n_obs, common.CONTROL_LABEL, dtype=object)
    labels[keep] = [_label(str(p)) for p in perturbation.to_numpy()[keep]]
    return common.assemble(
        ADAPTER,
        adata,
        counts,
        labels,
        keep_cells=keep,
        keep_genes=keep_genes,
        qc=qc,
        extra_obs={"original_perturbation": perturbation.astype(str).to_numpy()},
        dropped_cells={"perturbation '*'": int(star.sum()), missing_note: int(missing.sum())},
        dropped_genes={
            f"detected in fewer than {MIN_CELLS_PER_GENE} cells": int((~keep_genes).sum())
        },
    )


def _label(perturbation: str) -> str:
    if "(mod)" in perturbation:
        return common.CONTROL_LABEL
    target = perturbation.split("_", 1)[0]
    if not target:
        raise DataError(f"{ADAPTER}: perturbation {perturbation!r} names no target before '_'")
    return common.label_of([target], ADAPTER)


def _missing_values(obs: pd.DataFrame, among: np.ndarray) -> tuple[np.ndarray, str]:
    """Cells (N,) with any missing obs value, and a note naming the columns that have them."""
    isna = obs.isna().to_numpy() & among[:, None]
    per_column = {str(c): int(n) for c, n in zip(obs.columns, isna.sum(axis=0), strict=True) if n}
    shown = ", ".join(f"{c} {n}" for c, n in per_column.items())
    return isna.any(axis=1), f"missing values in obs ({shown or 'none'})"


def _qc_on_all_genes(adata: ad.AnnData, counts: sp.csr_matrix) -> pd.DataFrame | None:
    """The QC metrics obs has and the others computed on every gene of the input; None if
    none is available. One that cannot be computed is left to the loader (logged)."""
    metrics = qc_metrics_of(adata, InMemoryCounts(counts), data_config(), QC_SEED)
    if metrics.unavailable:
        log.warning(
            "%s: QC metrics not written (%s); the loader computes them on the kept genes",
            ADAPTER,
            "; ".join(f"{m}: {why}" for m, why in metrics.unavailable.items()),
        )
    return metrics.table if len(metrics.table.columns) else None
