"""The two non-learned baselines as cell-level prediction files, scored by cell-eval like a model.

`cradle-jax predict --baseline control_mean|additive` writes the same pair of files as for a
model (model.py: same genes in the same order, same perturbation column and labels,
control cells in both, X = log1p(counts / total · 1e4), raw counts in layers['counts'], the scale
in uns['cradle_jax']), so `cell-eval run` scores a baseline and a model side by side against the
same real file. The real file is built exactly as for the model.

What the baselines are fitted on. At predict time an export carries the vocabulary, the genes,
the data config and the QC thresholds, but no cells and no split; the only cells are the real
file's (--real, raw counts). So both baselines are fitted on the real file's QC-pass control cells
and, for `additive`, the QC-pass cells of each single perturbation that a predicted label is made
of. A combination's own cells are never used: for a combination the additive prediction is a
genuine guess. For a single it is not: its predicted mean is (up to clipping at 0) the mean of
that single's QC-pass cells in the very file it is scored against, an in-sample lookup and an
upper bound for singles, unlike the ATE-level baseline of `evaluate` (scores/baselines.py), which
uses the training split only. QC follows the model's own rules: the six metrics from obs when the
file has all of them, otherwise computed (scanpy, Scrublet) as the loader does, on every gene
but only on the cells that could be fitted on (controls and the needed singles); flags use the
model's thresholds at its data.qc_threshold; a cell failing any criterion is not used.

The cells. Each predicted perturbation gets `n_cells` cells, each built from one QC-pass real
control cell (drawn with a NumPy generator from the seed: whole random permutations of the
controls, one after another, so the controls are used as evenly as possible and `n_cells` equal
to the number of QC-pass controls uses each exactly once):

* control_mean: the control cell itself, its counts and its log1p-normalised X (the
  perturbation's predicted distribution is the control distribution).
* additive: X = max(0, x + Σ_s (mean of single s's cells − mean of the controls)), x the control
  cell's log1p(counts / total · 1e4) (total over the model's genes, as in the files) and the
  means taken on that scale; the clip keeps the log1p scale non-negative. The counts layer
  holds round(expm1(X) · total / 1e4) with the control cell's own total: a reconstruction
  (log1p-normalising it does not give X back exactly), so X is the prediction;
  uns['cradle_jax'] records `counts_reconstructed`.

The prediction file's control cells are the real file's control cells (all of them, as `--controls
real` does for a model: there is no generator to draw them from), QC failures included, while
the predicted cells are built from the QC-pass ones only; so even control_mean's effect against
the file's controls is not exactly 0 where QC-failing controls differ. obs['source_cell'] names
the real control cell each predicted cell was built from.
"""

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cradle_jax.data.dataset import count_source
from cradle_jax.data.errors import DataError
from cradle_jax.data.perturbations import read_labels
from cradle_jax.data.seeding import host_rng
from cradle_jax.evaluate.cell_eval_files.model import (
    PERTURBATION_COLUMN,
    TARGET_SUM,
    PredictionPair,
    log_normalized,
    qc_pass_of,
    real_cells,
)
from cradle_jax.evaluate.generation.names import generated_cell_names
from cradle_jax.evaluate.scores.baselines import BASELINES
from cradle_jax.train.bundle import ModelBundle

SOURCE_COLUMN = "source_cell"


@dataclass(frozen=True)
class BaselineFit:
    """What the baselines need from the real file, over the model's genes (G) in its order."""

    control_names: np.ndarray  # (C,) the QC-pass control cells
    control_counts: sp.csr_matrix  # (C, G) float32 raw counts
    control_x: sp.csr_matrix  # (C, G) float32 log1p(counts / total · 1e4)
    effects: dict[str, np.ndarray]  # single → (G,) float64 mean of its cells − controls' mean
    fit_cells: dict[str, int]  # label → QC-pass cells it was fitted on
    qc_metrics_source: str  # "obs" or "computed"


def fit_baseline(
    bundle: ModelBundle, real: ad.AnnData, needed: dict[str, list[str]]
) -> BaselineFit:
    """Controls and single effects from the real file's QC-pass cells; `needed` maps each single
    to the predicted labels that contain it (empty for control_mean). DataError naming a single
    (and a label that needs it) that has no QC-pass cell, or if no control cell passes QC."""
    data = bundle.config.data
    control = bundle.vocabulary.control_label
    cell_labels, _ = read_labels(
        real.obs, data.perturbation_key, data.separator, data.control_label
    )
    wanted = [control, *needed]
    rows = np.flatnonzero(np.isin(cell_labels, wanted))
    passed, qc_source = qc_pass_of(bundle, real, rows)
    for single, labels in needed.items():
        of_single = cell_labels[rows] == single
        if not passed[of_single].any():
            found = (
                f"{int(of_single.sum())} cell(s) of it and none passes QC"
                if of_single.any()
                else "no cell of it"
            )
            raise DataError(
                f"additive baseline: {labels[0]!r} needs the effect of the single perturbation "
                f"{single!r}, but the real file has {found}; add {single!r} cells to --real"
            )
    rows, cell_labels = rows[passed], cell_labels[rows][passed]
    if not (cell_labels == control).any():
        raise DataError(f"no control cell ({control!r}) of the real file passes QC")

    genes = pd.Index(real.var_names.astype(str)).get_indexer(bundle.gene_names.astype(str))
    counts = sp.csr_matrix(count_source(real, data.layer).matrix[rows][:, genes], dtype=np.float32)
    x = log_normalized(counts)
    is_control = cell_labels == control
    control_mean = _mean(x[is_control])
    return BaselineFit(
        control_names=np.asarray(real.obs_names[rows][is_control].astype(str), dtype=object),
        control_counts=counts[is_control],
        control_x=x[is_control],
        effects={single: _mean(x[cell_labels == single]) - control_mean for single in needed},
        fit_cells={label: int((cell_labels == label).sum()) for label in wanted},
        qc_metrics_source=qc_source,
    )


def baseline_prediction_pair(
    bundle: ModelBundle,
    real: ad.AnnData,
    perturbations: list[str],
    *,
    baseline: str,
    n_cells: int,
    seed: int,
    perturbation_column: str = PERTURBATION_COLUMN,
) -> PredictionPair:
    """`n_cells` cells per perturbation (canonical labels) from a baseline (see the module
    docstring), the real control cells, and the real file's cells of the same labels."""
    if baseline not in BASELINES:
        raise DataError(f"--baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")
    if n_cells < 1:
        raise DataError(f"--n_cells must be at least 1, got {n_cells}")
    vocabulary = bundle.vocabulary
    control = vocabulary.control_label
    labels = [control, *dict.fromkeys(p for p in perturbations if p != control)]
    members = {label: vocabulary.parse(label) for label in labels[1:]}
    real_part = real_cells(bundle, real, labels, perturbation_column)
    needed: dict[str, list[str]] = {}
    if baseline == "additive":
        for label, singles in members.items():
            for single in singles:
                needed.setdefault(single, []).append(label)
    fit = fit_baseline(bundle, real, needed)
    rng = host_rng(seed, "predict/baseline")
    cells = [_baseline_cells(fit, members[label], baseline, n_cells, rng) for label in labels[1:]]
    prediction = _prediction_file(real_part, cells, labels, n_cells, perturbation_column)
    provenance = _provenance(bundle, fit, baseline, n_cells, seed, perturbation_column)
    prediction.uns["cradle_jax"] = {**provenance, "file": "prediction"}
    real_part.uns["cradle_jax"] = {**provenance, "file": "real"}
    return PredictionPair(prediction, real_part)


def _baseline_cells(
    fit: BaselineFit, singles: list[str], baseline: str, n_cells: int, rng: np.random.Generator
) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """One label's `n_cells` predicted cells: X (log1p scale), counts, and the control cell each
    was built from (see the module docstring)."""
    source = _draws(rng, len(fit.control_names), n_cells)
    if baseline == "control_mean":
        return fit.control_x[source], fit.control_counts[source], fit.control_names[source]
    totals = np.asarray(fit.control_counts.sum(axis=1), dtype=np.float64).ravel()
    shift = np.sum([fit.effects[single] for single in singles], axis=0)
    x = np.maximum(fit.control_x[source].toarray() + shift, 0.0).astype(np.float32)
    reconstructed = np.round(np.expm1(x.astype(np.float64)) * totals[source, None] / TARGET_SUM)
    counts = sp.csr_matrix(reconstructed.astype(np.float32))
    return sp.csr_matrix(x), counts, fit.control_names[source]


def _prediction_file(
    real_part: ad.AnnData,
    cells: list[tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]],
    labels: list[str],
    n_cells: int,
    perturbation_column: str,
) -> ad.AnnData:
    """The real file's control cells, then each label's predicted cells (`_baseline_cells`)."""
    control = labels[0]
    real_controls = real_part[(real_part.obs[perturbation_column] == control).to_numpy()]
    predicted_labels = np.repeat(np.asarray(labels[1:], dtype=object), n_cells)
    xs, counts, sources = ([cell[i] for cell in cells] for i in range(3))
    obs = pd.DataFrame(
        {
            perturbation_column: pd.Categorical(
                [control] * real_controls.n_obs + predicted_labels.tolist(), categories=labels
            ),
            SOURCE_COLUMN: [*real_controls.obs_names, *np.concatenate(sources).tolist()],
        },
        index=pd.Index([*real_controls.obs_names, *generated_cell_names(predicted_labels)]),
    )
    prediction = ad.AnnData(
        X=sp.vstack([sp.csr_matrix(real_controls.X), *xs], format="csr", dtype=np.float32),
        obs=obs,
        var=pd.DataFrame(index=real_part.var_names.copy()),
    )
    prediction.layers["counts"] = sp.vstack(
        [sp.csr_matrix(real_controls.layers["counts"]), *counts], format="csr", dtype=np.float32
    )
    return prediction


def _provenance(
    bundle: ModelBundle,
    fit: BaselineFit,
    baseline: str,
    n_cells: int,
    seed: int,
    perturbation_column: str,
) -> dict:
    """What uns['cradle_jax'] of both files records: the baseline, the scale, what it was
    fitted on and the QC it used."""
    control = bundle.vocabulary.control_label
    return {
        "source": f"baseline:{baseline}",
        "target_sum": TARGET_SUM,
        "transform": "log1p",
        "counts_layer": "counts",
        "counts_reconstructed": baseline == "additive",
        "perturbation_column": perturbation_column,
        "control_label": control,
        "controls": "real",
        "seed": seed,
        "baseline_cells_per_label": n_cells,
        "fitted_on": "the real file's QC-pass control cells and single-perturbation cells",
        "fit_labels": list(fit.fit_cells),
        "fit_cells": list(fit.fit_cells.values()),
        "qc_threshold": float(bundle.config.data.qc_threshold),
        "qc_metrics_source": fit.qc_metrics_source,
        "versions": bundle.versions,
    }


def _mean(x: sp.csr_matrix) -> np.ndarray:
    return np.asarray(x.astype(np.float64).mean(axis=0)).ravel()


def _draws(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """`size` indices below `n`: whole random permutations one after another, cut at `size`."""
    return np.concatenate([rng.permutation(n) for _ in range(-(-size // n))])[:size]
