"""Dixit et al. 2016 (CRISPR-KO Perturb-seq, multiplexed guides) onto the data contract
(docs/data.md#adapters).

Input: the authors' `dixit_qc.h5ad` (figshare 34011689 plus their QC columns). Raw counts come
from `layers['counts']` when present, else from X.

The original labels a cell with `combined_guides`, or `non-targeting` when none of its guide
columns is set, and drops cells with more than two guides. It finds the guide columns as every
obs column outside a fixed list of known names that contains neither "INTERGENIC" nor "_", so
any other underscore-free obs column would be taken for a guide. We read the targets from
`combined_guides` itself instead: its pieces between `_`, `,`, `+`, `;`, `|` or spaces are the
targeted genes, pieces naming intergenic or non-targeting guides are controls, and an empty or
missing value means no guide. The label is the distinct targets joined by `+` (`EGR1_ELK1`
becomes `EGR1+ELK1`). An obs column named after a target is checked against it, so a
`combined_guides` read wrongly is an error, not a silent mislabelling. Cells with more than two
distinct targets are dropped, as in the original, and counted.

Two differences from the original follow from labels being sets of targets: a cell with one
gene guide and one intergenic guide is labelled by its gene (the original gives it its own
label with the same dosage row), and `EGR1_ELK1` and `ELK1_EGR1`, if both occur, are one
combination. `combined_guides` is kept in obs, and beside it `treatment`, the original's label
(`combined_guides`, or `non-targeting` without a target), so that
`--config.data.reference_group_key=treatment` reproduces the original's reference groups.
The original fits QC thresholds before dropping the cells with more than two guides; here the
loader fits them on the cells this adapter keeps.
"""

import logging

import anndata as ad
import numpy as np
import pandas as pd

from cradle_jax.adapters import common
from cradle_jax.data.errors import DataError

log = logging.getLogger(__name__)

ADAPTER = "Dixit adapter"
GUIDES = "combined_guides"
MAX_GUIDES = 2


def prepare(adata: ad.AnnData) -> ad.AnnData:
    """A new AnnData with raw counts, `perturbation` labels from `combined_guides`, QC columns."""
    counts = common.raw_counts(adata, ADAPTER)
    if GUIDES not in adata.obs.columns:
        raise DataError(
            f"{ADAPTER}: obs has no {GUIDES!r} column "
            f"(columns: {', '.join(map(str, adata.obs.columns[:10]))})"
        )
    raw = adata.obs[GUIDES]
    text = np.where(raw.isna().to_numpy(), "", raw.astype(str).to_numpy()).astype(str)
    values, value_of_cell = np.unique(text, return_inverse=True)
    targets = [_targets(value) for value in values]
    _cross_check(adata.obs, targets, value_of_cell, text)

    n_targets = np.array([len(t) for t in targets])[value_of_cell]
    keep = n_targets <= MAX_GUIDES
    labels = np.array([common.label_of(t, ADAPTER) for t in targets], dtype=object)
    treatment = np.where(n_targets > 0, text, common.CONTROL_LABEL)
    return common.assemble(
        ADAPTER,
        adata,
        counts,
        labels[value_of_cell],
        keep_cells=keep,
        qc=common.carried_qc(adata.obs, ADAPTER),
        extra_obs={GUIDES: text, "treatment": treatment},
        dropped_cells={f"more than {MAX_GUIDES} guides": int((~keep).sum())},
    )


def _targets(value: str) -> frozenset[str]:
    """The targeted genes named in one `combined_guides` value; control pieces drop out."""
    found = set()
    for piece in common.tokens(value):
        if common.is_control_token(piece):
            continue
        if not piece[0].isalpha():
            raise DataError(
                f"{ADAPTER}: {GUIDES} value {value!r} does not read as target genes joined by "
                f"'_', ',' or '+' (piece {piece!r} is not a gene name)"
            )
        found.add(piece)
    return frozenset(found)


def _cross_check(
    obs: pd.DataFrame,
    targets: list[frozenset[str]],
    value_of_cell: np.ndarray,
    text: np.ndarray,
) -> None:
    """Every numeric or boolean obs column named after a target must be set exactly where the
    cell's `combined_guides` names that target."""
    checked = []
    for target in sorted(set().union(*targets)):
        if target not in obs.columns or target == GUIDES:
            continue
        column = obs[target]
        if pd.api.types.is_bool_dtype(column):
            marked = column.to_numpy(dtype=bool)
        elif pd.api.types.is_numeric_dtype(column):
            marked = column.to_numpy(dtype=np.float64, na_value=0.0) > 0
        else:
            continue
        named = np.array([target in t for t in targets])[value_of_cell]
        wrong = marked != named
        if wrong.any():
            first = int(np.flatnonzero(wrong)[0])
            raise DataError(
                f"{ADAPTER}: obs column {target!r} disagrees with {GUIDES} in {int(wrong.sum())} "
                f"cells (e.g. cell {obs.index[first]!r}: {GUIDES} {text[first]!r}, {target} = "
                f"{column.iloc[first]!r})"
            )
        checked.append(target)
    if checked:
        log.info("%s: %s agrees with %d target columns", ADAPTER, GUIDES, len(checked))
    else:
        log.info("%s: no obs column is named after a target; nothing to cross-check", ADAPTER)
