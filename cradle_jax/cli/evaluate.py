"""`cradle-jax evaluate`: score a trained workdir or an export; metrics.json and the report."""

from pathlib import Path

import ml_collections
from absl import flags

from cradle_jax.cli.common import EXPORT, WORKDIR
from cradle_jax.config import eval_config
from cradle_jax.data.cell_splits import write_cell_splits
from cradle_jax.evaluate.report.export import load_export
from cradle_jax.evaluate.report.run import evaluate, write_results
from cradle_jax.evaluate.report.text import report
from cradle_jax.evaluate.report.workdir import evaluate_workdir, settings_with
from cradle_jax.train.bundle import ModelBundle

_EVAL = eval_config()
ATE_PARTICLES = flags.DEFINE_integer(
    "ate_particles",
    None,
    f"evaluate: generated cells per label for the model ATE (config: {_EVAL.ate_particles})",
)
QC_CELLS = flags.DEFINE_integer(
    "qc_cells",
    None,
    f"evaluate: generated cells per label for the QC pass rate (config: {_EVAL.qc_cells})",
)
PLOTS = flags.DEFINE_bool(
    "plots", True, "evaluate --workdir, sweep: write the plots; --noplots skips them (the UMAP "
    "of the latent plot takes about a minute to load in each new process on a small CPU)"
)  # fmt: skip


def eval_overrides() -> dict:
    """The `eval` fields the command line sets for this evaluation."""
    values = {"ate_particles": ATE_PARTICLES.value, "qc_cells": QC_CELLS.value}
    return {name: value for name, value in values.items() if value is not None}


def evaluation_settings(bundle: ModelBundle) -> ml_collections.ConfigDict:
    """The run's `eval` section over today's defaults, with the command line's overrides."""
    return settings_with(bundle, eval_overrides())


def run(out: str | None) -> None:
    """From --workdir: results and plots into the workdir. From --export: results into --out."""
    if bool(WORKDIR.value) == bool(EXPORT.value):
        raise flags.ValidationError("evaluate needs one of --workdir DIR or --export FILE")
    if EXPORT.value and not out:
        raise flags.ValidationError("evaluate --export needs --out DIR for the results")
    if WORKDIR.value:
        result = evaluate_workdir(WORKDIR.value, eval_overrides(), plots=PLOTS.value)
        print(report(result.metrics))
        figures = result.figures
        plots = f" and {len(figures)} plots in {figures[0].parent}" if figures else ""
        print(f"wrote {result.path}{plots}")
        return
    bundle, reference = load_export(EXPORT.value)
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    metrics, tables, _ = evaluate(
        bundle, reference, evaluation_settings(bundle), seed=bundle.config.seed
    )
    if reference.cell_splits is not None:
        write_cell_splits(reference.cell_splits, directory)
    path = write_results(metrics, tables, directory)
    print(report(metrics))
    print(f"wrote {path} (plots need the training data: evaluate --workdir)")
