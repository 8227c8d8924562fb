"""Evaluate a trained workdir in place: what `cradle-jax evaluate --workdir` and sweeps run.

Reads the run's model and its training data, scores it (`report.run`), and writes the plots,
cell_splits.csv (each cell's split, by name), ate_tables.npz and, last, metrics.json into the
workdir: metrics.json exists only once the whole evaluation is done, which is how a sweep tells
a finished run. One function, so that a sweep evaluating its runs in-process produces exactly
what the command does.
"""

from dataclasses import dataclass
from pathlib import Path

import ml_collections
import numpy as np

from cradle_jax.data.cell_splits import write_cell_splits
from cradle_jax.data.dataset import PerturbData, load_perturb_data, with_generated_basis
from cradle_jax.data.simulate import load_truth
from cradle_jax.evaluate.config import eval_settings
from cradle_jax.evaluate.report.run import evaluate, write_results
from cradle_jax.evaluate.report.run_plots import write_plots
from cradle_jax.evaluate.scores.data_reference import data_reference
from cradle_jax.train.bundle import ModelBundle, load_workdir
from cradle_jax.train.errors import RunError


@dataclass(frozen=True)
class WorkdirEvaluation:
    """The metrics (as in metrics.json), where they were written, and the plot files."""

    metrics: dict
    path: Path
    figures: list[Path]


def truth_beside(path: str) -> dict | None:
    """The simulator's planted truth written beside a simulated .h5ad, if there is one."""
    truth = Path(path).with_name(f"{Path(path).stem}.truth.npz")
    return load_truth(truth) if truth.exists() else None


def load_training_data(bundle: ModelBundle, workdir: str | Path) -> PerturbData:
    """The run's dataset read as training read it; an error if its genes have changed."""
    config = bundle.config
    data = load_perturb_data(config.data.path, config.data, config.seed)
    if not np.array_equal(data.gene_names.astype(str), bundle.gene_names.astype(str)):
        raise RunError(
            f"{config.data.path} no longer has the genes the model in {workdir} was trained on"
        )
    return data


def settings_with(bundle: ModelBundle, overrides: dict | None) -> ml_collections.ConfigDict:
    """The run's `eval` section over today's defaults, with `overrides` ({"qc_cells": 50})."""
    settings = eval_settings(bundle.config)
    settings.update(overrides or {})
    return settings


def evaluate_workdir(
    workdir: str | Path, overrides: dict | None = None, *, plots: bool = True
) -> WorkdirEvaluation:
    """Score the best parameters of `workdir` on its training data; results into `workdir`.

    `overrides` replace fields of the run's `eval` section for this evaluation only.
    """
    bundle = load_workdir(workdir)
    settings = settings_with(bundle, overrides)
    data = load_training_data(bundle, workdir)
    seed = bundle.config.seed
    reference = data_reference(
        bundle, data, settings, seed=seed, truth=truth_beside(bundle.config.data.path)
    )
    metrics, tables, generated = evaluate(bundle, reference, settings, seed=seed)
    figures = []
    if plots:  # the violins' real side is on the generated cells' QC basis
        shown = with_generated_basis(data, bundle.config.data, seed)
        figures = write_plots(bundle, shown, tables, generated, workdir, seed=seed)
    write_cell_splits(reference.cell_splits, workdir)
    path = write_results(metrics, tables, workdir)
    return WorkdirEvaluation(metrics=metrics, path=path, figures=figures)
