"""`cradle-jax evaluate`: score a trained workdir or an export; metrics.json and the report."""

from pathlib import Path

import ml_collections
import numpy as np
from absl import flags

from cradle_jax.cli.common import EXPORT, WORKDIR
from cradle_jax.data.dataset import PerturbData, load_perturb_data
from cradle_jax.data.simulate import load_truth
from cradle_jax.evaluate.config import eval_settings
from cradle_jax.evaluate.export import load_export
from cradle_jax.evaluate.run import (
    data_reference,
    evaluate,
    report,
    write_plots,
    write_results,
)
from cradle_jax.train.bundle import ModelBundle, load_workdir
from cradle_jax.train.errors import RunError

ATE_PARTICLES = flags.DEFINE_integer(
    "ate_particles", None, "evaluate: generated cells per label for the model ATE (config: 2500)"
)
QC_CELLS = flags.DEFINE_integer(
    "qc_cells", None, "evaluate: generated cells per label for the QC pass rate (config: 100)"
)


def truth_beside(path: str) -> dict | None:
    """The simulator's planted truth written beside a simulated .h5ad, if there is one."""
    truth = Path(path).with_name(f"{Path(path).stem}.truth.npz")
    return load_truth(truth) if truth.exists() else None


def evaluation_settings(bundle: ModelBundle) -> ml_collections.ConfigDict:
    """The run's `eval` section over today's defaults, with the command line's overrides."""
    eval_cfg = eval_settings(bundle.config)
    if ATE_PARTICLES.value is not None:
        eval_cfg.ate_particles = ATE_PARTICLES.value
    if QC_CELLS.value is not None:
        eval_cfg.qc_cells = QC_CELLS.value
    return eval_cfg


def load_training_data(bundle: ModelBundle, workdir: str) -> PerturbData:
    config = bundle.config
    data = load_perturb_data(config.data.path, config.data, config.seed)
    if not np.array_equal(data.gene_names.astype(str), bundle.gene_names.astype(str)):
        raise RunError(
            f"{config.data.path} no longer has the genes the model in {workdir} was trained on"
        )
    return data


def run(out: str | None) -> None:
    """From --workdir: results and plots into the workdir. From --export: results into --out."""
    if bool(WORKDIR.value) == bool(EXPORT.value):
        raise flags.ValidationError("evaluate needs one of --workdir DIR or --export FILE")
    if EXPORT.value and not out:
        raise flags.ValidationError("evaluate --export needs --out DIR for the results")
    data = None
    if WORKDIR.value:
        bundle = load_workdir(WORKDIR.value)
        eval_cfg = evaluation_settings(bundle)
        data = load_training_data(bundle, WORKDIR.value)
        truth = truth_beside(bundle.config.data.path)
        reference = data_reference(bundle, data, eval_cfg, seed=bundle.config.seed, truth=truth)
        directory = Path(WORKDIR.value)
    else:
        bundle, reference = load_export(EXPORT.value)
        eval_cfg = evaluation_settings(bundle)
        directory = Path(out)
        directory.mkdir(parents=True, exist_ok=True)
    seed = bundle.config.seed
    metrics, tables, generated = evaluate(bundle, reference, eval_cfg, seed=seed)
    path = write_results(metrics, tables, directory)
    print(report(metrics))
    if data is None:
        print(f"wrote {path} (plots need the training data: evaluate --workdir)")
        return
    figures = write_plots(bundle, data, tables, generated, directory, seed=seed)
    print(f"wrote {path} and {len(figures)} plots in {figures[0].parent}")
