"""What the dataset adapters share: raw counts, carried QC columns, control names, assembly.

Every adapter reads its paper's columns its own way but hands the same pieces to `assemble`, so
all four check counts the same way, carry the same QC columns, write the same output layout
(docs/data.md#input-contract with the defaults: obs `perturbation`, control `non-targeting`,
pairs joined by `+`) and record what they dropped in `uns["cradle_jax_prepare"]`.
"""

import logging
import re
from collections.abc import Iterable, Mapping

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cradle_jax.config import data_config
from cradle_jax.data.counts import InMemoryCounts, check_counts
from cradle_jax.data.errors import DataError
from cradle_jax.data.qc import QC_METRICS

log = logging.getLogger(__name__)

# A prepared file carries the labels the default data config reads, so it loads without flags.
_READ_BY = data_config()
PERTURBATION_KEY = _READ_BY.perturbation_key
CONTROL_LABEL = _READ_BY.control_label
SEPARATOR = _READ_BY.separator
PROVENANCE_KEY = "cradle_jax_prepare"

# Names the papers give control guides: Norman "NegCtrl0", Dixit "INTERGENIC1144056",
# Replogle "non-targeting_00001".
_CONTROL_TOKEN = re.compile(r"^(intergenic.*|negctrl.*|non-?targeting.*|ctrl|control)$", re.I)
_TOKEN_BREAK = re.compile(r"[_,+;|\s]+")


def tokens(text: str) -> list[str]:
    """The non-empty pieces of `text` between `_`, `,`, `+`, `;`, `|` and whitespace."""
    return [piece for piece in _TOKEN_BREAK.split(str(text)) if piece]


def is_control_token(token: str) -> bool:
    return bool(_CONTROL_TOKEN.match(token))


def label_of(members: Iterable[str], adapter: str) -> str:
    """Our label of one cell: its sorted distinct targets joined by `+`, or the control label."""
    members = sorted(set(members))
    for member in members:
        if not member or SEPARATOR in member or member == CONTROL_LABEL:
            raise DataError(f"{adapter}: perturbation name {member!r} cannot be written as a label")
    return SEPARATOR.join(members) if members else CONTROL_LABEL


def raw_counts(adata: ad.AnnData, adapter: str) -> sp.csr_matrix:
    """`layers['counts']` when present (where sc-pert and SAMS-VAE files keep raw counts while X
    is normalised), else X, as CSR; raw non-negative integers are required.
    """
    in_layer = "counts" in adata.layers
    matrix, where = (adata.layers["counts"], "layers['counts']") if in_layer else (adata.X, "X")
    if matrix is None:
        raise DataError(f"{adapter}: the input has no X and no layers['counts']")
    if not np.issubdtype(matrix.dtype, np.number):
        raise DataError(f"{adapter}: counts in {where} have dtype {matrix.dtype}, not numbers")
    counts = sp.csr_matrix(matrix)
    check_counts(InMemoryCounts(counts), f"{adapter}: counts in {where}")
    return counts


def carried_qc(
    obs: pd.DataFrame, adapter: str, not_ours: Mapping[str, str] | None = None
) -> pd.DataFrame | None:
    """The QC metric columns obs has, all six or some; None when it has none.

    The loader uses the metrics obs has and computes only the missing ones
    (docs/data.md#qc-metrics). `not_ours` maps a metric that the input layout, when it lacks
    some of the six, uses for something else to why (in the sc-pert Norman file `UMI_count`
    counts guide UMIs); such a column is left behind.
    """
    present = [metric for metric in QC_METRICS if metric in obs.columns]
    if len(present) < len(QC_METRICS):
        for metric, meaning in (not_ours or {}).items():
            if metric in present:
                present.remove(metric)
                log.info("%s: obs %r not carried: %s", adapter, metric, meaning)
    if not present:
        return None
    if len(present) < len(QC_METRICS):
        log.info(
            "%s: QC metrics %s carried from obs; the loader computes the others",
            adapter,
            ", ".join(present),
        )
    return obs[present].copy()


def binary_values(column: pd.Series) -> np.ndarray | None:
    """A 0/1 or boolean column as bool (N,); None when it holds anything else (NaN included)."""
    if pd.api.types.is_bool_dtype(column):
        return column.to_numpy(dtype=bool)
    if not pd.api.types.is_numeric_dtype(column):
        return None
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isin(values, (0.0, 1.0)).all():
        return None
    return values == 1.0


def assemble(
    adapter: str,
    adata: ad.AnnData,
    counts: sp.csr_matrix,
    labels: np.ndarray,
    *,
    keep_cells: np.ndarray | None = None,
    keep_genes: np.ndarray | None = None,
    var: pd.DataFrame | None = None,
    qc: pd.DataFrame | None = None,
    extra_obs: Mapping[str, np.ndarray] | None = None,
    dropped_cells: Mapping[str, int] | None = None,
    dropped_genes: Mapping[str, int] | None = None,
) -> ad.AnnData:
    """The new AnnData of the data contract from the kept cells and genes of `adata`.

    `labels` (N,) and the `extra_obs` columns (kept as the papers' own annotation) are over all
    input cells; `var` replaces `adata.var` (same rows); `qc` holds the QC metric columns to
    carry, all six or some (`carried_qc`). Cell and gene names are made unique
    (the loader refuses duplicates). Raises DataError when nothing, or no control or no
    perturbed cell, is left.
    """
    n_cells, n_genes = counts.shape
    cells = np.ones(n_cells, bool) if keep_cells is None else keep_cells
    genes = np.ones(n_genes, bool) if keep_genes is None else keep_genes
    dropped = {"cells": _nonzero(dropped_cells), "genes": _nonzero(dropped_genes)}
    _check_not_empty(adapter, cells, genes, dropped)
    kept_labels = np.asarray(labels, dtype=object)[cells]
    n_control = _count_controls(adapter, kept_labels)
    obs = pd.DataFrame(
        {PERTURBATION_KEY: pd.Categorical(kept_labels)},
        index=_unique(adata.obs_names[cells], "cell", adapter),
    )
    _carry_obs_columns(obs, cells, qc, extra_obs)
    var = (adata.var if var is None else var).iloc[np.flatnonzero(genes)].copy()
    var.index = _unique(var.index, "gene", adapter)

    result = ad.AnnData(X=counts[cells][:, genes], obs=obs, var=var)
    result.uns[PROVENANCE_KEY] = {
        "adapter": adapter,
        "input_cells": int(n_cells),
        "input_genes": int(n_genes),
        "dropped_cells": dict(dropped["cells"]),
        "dropped_genes": dict(dropped["genes"]),
    }
    _log_assembled(adapter, result, dropped, n_control)
    return result


def _check_not_empty(
    adapter: str, cells: np.ndarray, genes: np.ndarray, dropped: dict[str, dict[str, int]]
) -> None:
    """DataError when no cell or no gene is kept, listing what was dropped and why."""
    if cells.any() and genes.any():
        return
    shown = "; ".join(
        f"{n} {what} ({reason})"
        for what, reasons in dropped.items()
        for reason, n in reasons.items()
    )
    raise DataError(
        f"{adapter}: the result would be empty ({cells.sum()} cells x {genes.sum()} genes; "
        f"dropped: {shown or 'nothing'})"
    )


def _count_controls(adapter: str, kept_labels: np.ndarray) -> int:
    """The number of control cells kept; DataError when there are none or nothing else."""
    is_control = kept_labels == CONTROL_LABEL
    if not is_control.any():
        raise DataError(f"{adapter}: no control cells ({CONTROL_LABEL!r}) among the kept cells")
    if is_control.all():
        raise DataError(f"{adapter}: only control cells are left; nothing to model")
    return int(is_control.sum())


def _carry_obs_columns(
    obs: pd.DataFrame,
    cells: np.ndarray,
    qc: pd.DataFrame | None,
    extra_obs: Mapping[str, np.ndarray] | None,
) -> None:
    """Add the kept cells' QC metric columns and the papers' own annotation columns to `obs`."""
    for metric in [] if qc is None else qc.columns:
        obs[metric] = qc[metric].to_numpy()[cells]
    for name, values in (extra_obs or {}).items():
        obs[name] = pd.Categorical(np.asarray(values, dtype=str)[cells])


def _log_assembled(
    adapter: str, result: ad.AnnData, dropped: dict[str, dict[str, int]], n_control: int
) -> None:
    """Log what was dropped and why, then the size of the result."""
    for what, reasons in dropped.items():
        for reason, n in reasons.items():
            log.info("%s: dropped %d %s: %s", adapter, n, what, reason)
    log.info(
        "%s: %d cells x %d genes, %d treatments, %d control cells",
        adapter,
        result.n_obs,
        result.n_vars,
        result.obs[PERTURBATION_KEY].nunique(),
        n_control,
    )


def _unique(names: pd.Index, what: str, adapter: str) -> pd.Index:
    names = pd.Index(names).astype(str)
    if names.is_unique:
        return names
    n_repeated = int(names.duplicated().sum())
    log.info(
        "%s: %d repeated %s names made unique (suffixes -1, -2, ...)", adapter, n_repeated, what
    )
    return ad.utils.make_index_unique(names)


def _nonzero(dropped: Mapping[str, int] | None) -> dict[str, int]:
    # "/" would nest groups in the .h5ad's uns
    return {reason.replace("/", "|"): int(n) for reason, n in (dropped or {}).items() if n}
