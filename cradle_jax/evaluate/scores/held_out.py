"""Counterfactuals of real control cells against prior samples, on held-out perturbations.

For each perturbation of a split (by default the test split, whose combinations a
`data.split=combinations` run never trained on), two predictions with the same number of cells:
the real QC-pass control cells decoded under it (`source="cells"`) and new cells with basal states
from the prior (`source="prior"`) at the controls' median library size. QC-fail controls are left
out: their encoded basal state keeps whatever part of the artifact the model did not separate (on
the demo run, counterfactuals of all controls were 0.61 log2 units RMSE from the held-out mean
profile, those of the QC-pass ones 0.56). Each is scored against the split's real QC-pass cells
of that perturbation with `cell_sets.compare_to_real`, its predicted controls against the real
QC-pass controls: the counterfactuals' controls are the same real cells decoded under control,
the prior's are prior samples under control.
"""

import anndata as ad
import numpy as np
import pandas as pd

from cradle_jax.data.dataset import PerturbData
from cradle_jax.data.errors import DataError
from cradle_jax.data.splits import SPLIT_CODES
from cradle_jax.evaluate.generation.cells import generated_counts
from cradle_jax.evaluate.generation.counterfactual import counterfactual_counts
from cradle_jax.evaluate.scores.cell_sets import compare_to_real
from cradle_jax.train.bundle import ModelBundle
from cradle_jax.train.keys import purpose_key


def counterfactual_vs_prior(
    bundle: ModelBundle,
    adata: ad.AnnData,
    data: PerturbData,
    *,
    seed: int,
    split: str = "test",
    combinations_only: bool = True,
) -> pd.DataFrame:
    """One row per (perturbation, source) with the scores of `compare_to_real`; `adata` is the
    AnnData `data` was loaded from (its control cells are encoded as they are)."""
    control = bundle.vocabulary.control_label
    passing = data.qc.max(axis=1) == 0
    in_split = data.split == SPLIT_CODES[split]
    labels = sorted(set(data.labels[in_split & passing]) - {control})
    if combinations_only:
        labels = [label for label in labels if len(bundle.vocabulary.parse(label)) > 1]
    if not labels:
        raise DataError(f"the {split} split has no QC-pass cells of a perturbation to score")
    controls = np.flatnonzero((data.labels == control) & passing)
    if not len(controls):
        raise DataError("no QC-pass control cell to start counterfactuals from")
    real_control = data.counts.rows(controls)
    control_cells = adata[controls]
    cells = counterfactual_counts(
        bundle, control_cells.copy(), [control, *labels], purpose_key(seed, "held_out/cells")
    )
    prior, prior_labels = generated_counts(
        bundle, [control, *labels], len(controls), key_data=purpose_key(seed, "held_out/prior"),
        library=float(np.median(data.library_size[controls])),
    )  # fmt: skip
    prior_of = {label: prior[prior_labels == label] for label in [control, *labels]}
    rows = []
    for k, label in enumerate(labels, start=1):
        real = data.counts.rows(np.flatnonzero((data.labels == label) & in_split & passing))
        for source, predicted, predicted_control in (
            ("cells", cells[k], cells[0]),
            ("prior", prior_of[label], prior_of[control]),
        ):
            scores = compare_to_real(predicted, predicted_control, real, real_control)
            rows.append({"perturbation": label, "source": source, **scores})
    return pd.DataFrame(rows)
