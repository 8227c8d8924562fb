"""Check an adapter's result against the data contract and say what it holds.

The checks are the loader's cheap ones (raw counts, unique names, perturbation labels, the QC
columns that are present), run before anything is written, so that what `cradle-jax prepare`
writes is a file the loader accepts, whichever adapter (built-in or the user's) made it.
"""

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cradle_jax.adapters.common import CONTROL_LABEL, PERTURBATION_KEY, PROVENANCE_KEY, SEPARATOR
from cradle_jax.data.counts import InMemoryCounts, check_counts
from cradle_jax.data.errors import DataError
from cradle_jax.data.perturbations import read_labels
from cradle_jax.data.qc import QC_METRICS
from cradle_jax.data.qc_sources import qc_metrics_from_obs


def check_contract(adata: ad.AnnData) -> dict:
    """Validate a prepared AnnData (default contract: obs `perturbation`, control
    `non-targeting`, `+` between singles, counts in X); return its summary as a dict.
    """
    if not isinstance(adata, ad.AnnData):
        raise DataError(f"the adapter returned a {type(adata).__name__}, not an AnnData")
    if adata.X is None:
        raise DataError("the prepared AnnData has no X; raw counts belong in X")
    check_counts(InMemoryCounts(sp.csr_matrix(adata.X)), "prepared counts (X)")
    for what, names in (("cell", adata.obs_names), ("gene", adata.var_names)):
        if not pd.Index(names).is_unique:
            raise DataError(f"the prepared AnnData has repeated {what} names")
    labels, vocab = read_labels(adata.obs, PERTURBATION_KEY, SEPARATOR, CONTROL_LABEL)
    treatments, n_cells = np.unique(labels, return_counts=True)
    n_members = np.array([len(vocab.parse(t)) for t in treatments])
    provenance = adata.uns.get(PROVENANCE_KEY, {})
    return {
        "cells": adata.n_obs,
        "genes": adata.n_vars,
        "perturbations": vocab.size,
        "combinations": int((n_members >= 2).sum()),
        "combination_cells": int(n_cells[n_members >= 2].sum()),
        "control_cells": int(n_cells[n_members == 0].sum()),
        "qc_metrics_in_obs": _carried(adata.obs),
        "dropped_cells": dict(provenance.get("dropped_cells", {})),
        "dropped_genes": dict(provenance.get("dropped_genes", {})),
    }


def describe(summary: dict) -> str:
    """One paragraph a person reads after `prepare`."""
    text = (
        f"{summary['cells']} cells x {summary['genes']} genes; {summary['perturbations']} "
        f"perturbations, {summary['combinations']} combinations ({summary['combination_cells']} "
        f"cells), {summary['control_cells']} control cells; QC metrics "
        + _qc_text(summary["qc_metrics_in_obs"])
    )
    for what in ("cells", "genes"):
        dropped = summary[f"dropped_{what}"]
        if dropped:
            text += f" Dropped {what}: " + "; ".join(f"{n} {why}" for why, n in dropped.items())
            text += "."
    return text


def _carried(obs: pd.DataFrame) -> list[str]:
    """The QC metrics obs carries, validated as the loader does (numeric and finite values)."""
    metrics = qc_metrics_from_obs(obs)
    return [] if metrics is None else list(metrics.table.columns)


def _qc_text(carried: list[str]) -> str:
    if len(carried) == len(QC_METRICS):
        return "carried in obs."
    if carried:
        return f"{', '.join(carried)} carried in obs, the others computed when loaded."
    return "computed when loaded."
