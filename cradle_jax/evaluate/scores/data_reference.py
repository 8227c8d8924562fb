"""The data side of an evaluation: what a model's predictions are compared with, computed from
the run's data or read from an export, and the ATE metrics of a predicted table against it
column by column (docs/metrics.md#columns).
"""

from dataclasses import dataclass, field

import ml_collections
import numpy as np

from cradle_jax.data.cell_splits import CellSplits, cell_splits_of
from cradle_jax.data.dataset import PerturbData
from cradle_jax.evaluate.scores.baselines import baseline_ates
from cradle_jax.evaluate.scores.metrics import split_ate_metrics
from cradle_jax.evaluate.scores.qc_depth import real_depths
from cradle_jax.evaluate.scores.split_reference import by_cells, data_ate_by_split, labels_by_split
from cradle_jax.train.bundle import ModelBundle
from cradle_jax.train.iwelbo import split_iwelbo
from cradle_jax.train.keys import purpose_key
from cradle_jax.train.mesh import data_mesh, replicate


@dataclass(frozen=True)
class DataReference:
    """What evaluation needs from the dataset: computed from it, or read from an export.

    labels (K,) the treatment labels (control excluded); data_ate (K, G) on all QC-pass cells;
    data_ate_by_split: split → (K, G) on that split's QC-pass cells alone, the reference of its
    column for a split by cells (empty for a split by perturbations, and for exports written
    before it: every column then compares with data_ate); cell_splits: each cell's split by
    name; qc_library_sizes (n,) of the real QC-pass cells of the headline split, which cells
    generated for the QC pass rate draw their depth from; true_ate and true_top (planted DE
    sets, k → (K, k)) for simulated data; test_iwelbo of the model on the test cells (a model
    metric, but it needs the cells, so it travels here); baseline_ate: name → (K, G) ATE
    predicted by each non-learned baseline (see `scores.baselines`).
    """

    labels: list[str]
    labels_by_split: dict[str, list[str]]
    headline_split: str
    data_ate: np.ndarray
    real_median_library: float
    real_pass_rate: float
    test_iwelbo: float | None = None
    true_ate: np.ndarray | None = None
    true_top: dict[int, np.ndarray] | None = None
    baseline_ate: dict[str, np.ndarray] = field(default_factory=dict)
    data_ate_by_split: dict[str, np.ndarray] = field(default_factory=dict)
    cell_splits: CellSplits | None = None
    qc_library_sizes: np.ndarray | None = None


def data_reference(
    bundle: ModelBundle,
    data: PerturbData,
    eval_cfg: ml_collections.ConfigDict,
    *,
    seed: int,
    truth: dict | None = None,
) -> DataReference:
    """The data side of the evaluation of `bundle` on `data`, read from the run's data file
    (and its planted truth, if any)."""
    labels = labels_by_split(data)["all"]
    tables, present = data_ate_by_split(data, labels)
    cells = by_cells(bundle.config.data.split)
    headline = "test" if bundle.config.data.split == "combinations" else "all"
    true_ate = true_top = test_iwelbo = None
    if truth is not None:
        true_labels = [str(label) for label in truth["labels"]]
        rows = [true_labels.index(label) for label in labels]
        true_ate = truth["true_ate"][rows]
        true_top = {k: truth[f"de_genes_top{k}"][rows] for k in (20, 50)}
    if len(data.cells("test")) and eval_cfg.iwelbo_particles:
        mesh = data_mesh()
        test_iwelbo = split_iwelbo(
            replicate(bundle.params, mesh), data, "test", bundle.cfg, mesh,
            n_particles=eval_cfg.iwelbo_particles, batch_size=eval_cfg.iwelbo_batch_size,
            key_data=purpose_key(seed, "evaluate/iwelbo"),
        )  # fmt: skip
    return DataReference(
        labels=labels,
        labels_by_split=present if cells else labels_by_split(data),
        headline_split=headline,
        data_ate=tables.pop("all"),
        real_median_library=float(np.median(data.library_size)),
        real_pass_rate=float(np.mean(data.qc.max(axis=1) == 0)),
        test_iwelbo=test_iwelbo,
        true_ate=true_ate,
        true_top=true_top,
        baseline_ate=baseline_ates(data, labels),
        data_ate_by_split=tables if cells else {},
        cell_splits=cell_splits_of(bundle.config.data.path, data.split),
        qc_library_sizes=real_depths(data, headline),
    )


def split_metrics(reference: DataReference, table: np.ndarray) -> dict[str, float | None]:
    """The ATE metrics of a predicted table (K, G) per column, each against its own reference
    (docs/metrics.md#columns), keyed `<metric>-<column>`."""
    labels = np.asarray(reference.labels)
    metrics = {}
    for split, members in reference.labels_by_split.items():
        observed = reference.data_ate_by_split.get(split, reference.data_ate)
        metrics.update(split_ate_metrics(observed, table, labels, {split: members}))
    return metrics
