"""Norman et al. 2019 (CRISPRa, K562, singles and pairs) onto the data contract
(docs/data.md#adapters).

Input: the sc-pert "Norman processed" file, SAMS-VAE's `norman.h5ad` or the authors'
`norman_qc.h5ad`. Raw counts come from `layers['counts']` when present (the original sets
X <- layers['counts']), else from X.

The original reads the guides from every obs column whose name contains `guide_` except
`guide_identity` and `guide_ids` (one 0/1 column per targeted gene) and labels a cell with its
`guide_identity` (e.g. `CEBPA_KLF1__CEBPA_KLF1`), or `non-targeting` when no guide column is set.
We take the same columns and write the label as the targeted genes (the column names without
`guide_`) joined by `+`, so `CEBPA_KLF1__CEBPA_KLF1` becomes `CEBPA+KLF1` and a single in
either guide position (`ARID1A_NegCtrl0__...`, `NegCtrl0_ARID1A__...`) is `ARID1A`. Each
`guide_identity` must name exactly the genes of its guide columns (NegCtrl pieces are
controls); a disagreement is an error, since one of the two annotations is then wrong.
`guide_identity` is kept in obs, and beside it `treatment`, the original's label (guide_identity,
`non-targeting` for cells without a guide): the original splits pairs and groups counterfactual
references by it, and `--config.data.reference_group_key=treatment` reproduces its groups.
QC metric columns in obs are carried, except that a file without all six (sc-pert's layout)
keeps guide UMIs in `UMI_count`, which is left behind.
"""

import logging

import anndata as ad
import numpy as np
import pandas as pd

from cradle_jax.adapters import common
from cradle_jax.data.errors import DataError

log = logging.getLogger(__name__)

ADAPTER = "Norman adapter"
IDENTITY = "guide_identity"
_NOT_GUIDES = (IDENTITY, "guide_ids")
GUIDE_UMIS = "in the sc-pert layout it counts guide UMIs, not the cell's transcripts"


def guide_columns(obs: pd.DataFrame) -> list[str]:
    """The one-hot guide columns, by the original's rule."""
    return [c for c in map(str, obs.columns) if "guide_" in c and c not in _NOT_GUIDES]


def prepare(adata: ad.AnnData) -> ad.AnnData:
    """A new AnnData with raw counts, `perturbation` labels from the guide columns, QC columns."""
    counts = common.raw_counts(adata, ADAPTER)
    columns = guide_columns(adata.obs)
    if not columns:
        raise DataError(f"{ADAPTER}: obs has no guide_* columns (one 0/1 column per target gene)")
    one_hot = np.column_stack([_guide_values(adata.obs, c) for c in columns])
    targets = [c.split("guide_", 1)[1] for c in columns]
    patterns, pattern_of_cell = np.unique(one_hot, axis=0, return_inverse=True)
    members = [tuple(t for t, on in zip(targets, row, strict=True) if on) for row in patterns]
    labels = np.array([common.label_of(m, ADAPTER) for m in members], dtype=object)

    extra = {}
    if IDENTITY in adata.obs.columns:
        identity = adata.obs[IDENTITY].astype(str).to_numpy()
        _check_identity(identity, pattern_of_cell, members, adata.obs_names)
        extra[IDENTITY] = identity
        extra["treatment"] = np.where(one_hot.any(axis=1), identity, common.CONTROL_LABEL)
    else:
        log.warning("%s: obs has no %r; labels are not cross-checked", ADAPTER, IDENTITY)
    n_guides = one_hot.sum(axis=1)
    if (n_guides > 2).any():
        log.info("%s: %d cells carry more than two guides", ADAPTER, int((n_guides > 2).sum()))
    return common.assemble(
        ADAPTER,
        adata,
        counts,
        labels[pattern_of_cell],
        qc=common.carried_qc(adata.obs, ADAPTER, not_ours={"UMI_count": GUIDE_UMIS}),
        extra_obs=extra,
    )


def _guide_values(obs: pd.DataFrame, column: str) -> np.ndarray:
    values = common.binary_values(obs[column])
    if values is None:
        shown = obs[column].iloc[:3].tolist()
        raise DataError(
            f"{ADAPTER}: guide column {column!r} must hold 0/1 or True/False (starts {shown})"
        )
    return values


def _check_identity(
    identity: np.ndarray,
    pattern_of_cell: np.ndarray,
    members: list[tuple[str, ...]],
    cell_names: pd.Index,
) -> None:
    """Every cell's guide_identity names exactly the genes of its guide columns."""
    pairs = pd.DataFrame({"identity": identity, "pattern": pattern_of_cell})
    bad = set()
    for name, pattern in pairs.drop_duplicates().itertuples(index=False):
        named = {t for t in common.tokens(name) if not common.is_control_token(t)}
        expected = {t for member in members[pattern] for t in common.tokens(member)}
        if named != expected:
            bad.add((name, pattern))
    if not bad:
        return
    wrong = np.array([pair in bad for pair in zip(identity, pattern_of_cell, strict=True)])
    first = int(np.flatnonzero(wrong)[0])
    shown = "+".join(members[pattern_of_cell[first]]) or "none"
    raise DataError(
        f"{ADAPTER}: {IDENTITY} disagrees with the guide_* columns in {int(wrong.sum())} cells "
        f"(e.g. cell {cell_names[first]!r}: {IDENTITY} {identity[first]!r}, guide columns set: "
        f"{shown})"
    )
