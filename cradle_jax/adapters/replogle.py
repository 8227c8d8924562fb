"""Replogle et al. 2022 (CRISPRi, K562 genome-wide, filtered) onto the data contract
(docs/data.md#adapters).

Input: SAMS-VAE's `replogle.h5ad` (681 strong perturbations, 2 000 control cells, 1 187 genes)
or the authors' `replogle_qc.h5ad`. Raw counts come from `layers['counts']` when present, else
from X (dense in these files; written as CSR).

As the original, the label is the guide pair `sgID_AB`, and `non-targeting` for every pair whose
name contains "non-targeting"; the genes are re-indexed by `var['gene_name']` when present and
made unique. Strand signs in `sgID_AB` (`..._+_...`) would read as our combination separator,
so `+` is written `plus` in the label; the original `sgID_AB` is kept in obs beside it. The
target `gene` column is kept too: the original draws counterfactual references within the
target gene, which `--config.data.reference_group_key=gene` reproduces.
"""

import logging

import anndata as ad
import numpy as np
import pandas as pd

from cradle_jax.adapters import common
from cradle_jax.data.errors import DataError

log = logging.getLogger(__name__)

ADAPTER = "Replogle adapter"
GUIDE_PAIR = "sgID_AB"
GENE = "gene"


def prepare(adata: ad.AnnData) -> ad.AnnData:
    """A new AnnData with raw counts, `perturbation` labels from `sgID_AB`, gene symbols."""
    counts = common.raw_counts(adata, ADAPTER)
    if GUIDE_PAIR not in adata.obs.columns:
        raise DataError(f"{ADAPTER}: obs has no {GUIDE_PAIR!r} column (the guide pair per cell)")
    pairs = adata.obs[GUIDE_PAIR]
    if pairs.isna().any():
        raise DataError(f"{ADAPTER}: {GUIDE_PAIR} has {int(pairs.isna().sum())} missing values")
    pairs = pairs.astype(str)
    names = pairs.str.replace(common.SEPARATOR, "plus", regex=False)
    pairs_per_name = pairs.groupby(names.to_numpy()).nunique()
    if (pairs_per_name > 1).any():
        shown = pairs_per_name.index[pairs_per_name > 1][0]
        raise DataError(f"{ADAPTER}: several {GUIDE_PAIR} values map to label {shown!r}")
    control = pairs.str.contains(common.CONTROL_LABEL, regex=False).to_numpy()
    labels = np.where(control, common.CONTROL_LABEL, names.to_numpy()).astype(object)

    extra = {GUIDE_PAIR: pairs.to_numpy()}
    if GENE in adata.obs.columns:
        extra[GENE] = adata.obs[GENE].astype(str).to_numpy()
    else:
        log.warning("%s: obs has no %r column; references cannot be grouped by gene", ADAPTER, GENE)
    return common.assemble(
        ADAPTER,
        adata,
        counts,
        labels,
        var=_by_gene_name(adata.var),
        qc=common.carried_qc(adata.obs, ADAPTER),
        extra_obs=extra,
    )


def _by_gene_name(var: pd.DataFrame) -> pd.DataFrame:
    """var indexed by `gene_name` (the old index kept as column `gene_id`), as the original."""
    if "gene_name" not in var.columns:
        log.info("%s: var has no 'gene_name'; var_names are kept as gene symbols", ADAPTER)
        return var
    out = var.drop(columns="gene_name")
    if "gene_id" not in out.columns:
        out.insert(0, "gene_id", var.index.astype(str))
    out.index = pd.Index(var["gene_name"].astype(str).to_numpy())
    return out
