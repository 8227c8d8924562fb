"""`cradle-jax evaluate`: score a trained workdir; metrics.json and the report table."""

from pathlib import Path

import numpy as np
from absl import flags

from cradle_jax.cli.common import WORKDIR
from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.data.simulate import load_truth
from cradle_jax.evaluate.config import eval_config
from cradle_jax.evaluate.run import evaluate, report, write_plots, write_results
from cradle_jax.train.bundle import load_workdir
from cradle_jax.train.errors import RunError

ATE_PARTICLES = flags.DEFINE_integer(
    "ate_particles", None, "evaluate: generated cells per label for the model ATE (config: 2500)"
)
QC_CELLS = flags.DEFINE_integer(
    "qc_cells", None, "evaluate: generated cells per label for the QC pass rate (config: 100)"
)


def _truth_beside(path: str) -> dict | None:
    """The simulator's planted truth written beside a simulated .h5ad, if there is one."""
    truth = Path(path).with_name(f"{Path(path).stem}.truth.npz")
    return load_truth(truth) if truth.exists() else None


def run() -> None:
    if not WORKDIR.value:
        raise flags.ValidationError("evaluate needs --workdir DIR")
    bundle = load_workdir(WORKDIR.value)
    eval_cfg = eval_config()
    eval_cfg.update(bundle.config.get("eval", {}))
    if ATE_PARTICLES.value is not None:
        eval_cfg.ate_particles = ATE_PARTICLES.value
    if QC_CELLS.value is not None:
        eval_cfg.qc_cells = QC_CELLS.value
    config = bundle.config
    data = load_perturb_data(config.data.path, config.data, config.seed)
    if not np.array_equal(data.gene_names.astype(str), bundle.gene_names.astype(str)):
        raise RunError(
            f"{config.data.path} no longer has the genes the model in {WORKDIR.value} was "
            "trained on"
        )
    metrics, tables, generated = evaluate(
        bundle, data, eval_cfg, seed=config.seed, truth=_truth_beside(config.data.path)
    )
    path = write_results(metrics, tables, WORKDIR.value)
    figures = write_plots(bundle, data, tables, generated, WORKDIR.value, seed=config.seed)
    print(report(metrics))
    print(f"wrote {path} and {len(figures)} plots in {figures[0].parent}")
