"""`cradle-jax evaluate`: every metric of docs/metrics.md for a trained model, to metrics.json.

Model ATE from generated artifact-free cells, data ATE from QC-pass cells, their agreement per
column (all/train/val/test, each against the reference of docs/metrics.md#columns; full and
top-20 Pearson and R², Jaccard@20/50), the QC pass rate of generated cells under the real data's
thresholds at t = 3, 4, 5 (at the real cells' depth, and at ℓ = 10⁴), the test IWELBO, and, for
simulated data, the agreement with the planted truth. Every random draw comes from the run's
seed, so evaluating the same model twice gives the same numbers.
"""

import math
from pathlib import Path

import ml_collections
import numpy as np
import pandas as pd

from cradle_jax import atomic
from cradle_jax.evaluate.scores.ate import model_ate
from cradle_jax.evaluate.scores.data_reference import DataReference, split_metrics
from cradle_jax.evaluate.scores.metrics import truth_metrics
from cradle_jax.evaluate.scores.qc_depth import qc_results
from cradle_jax.evaluate.scores.split_reference import (
    COLUMNS,
    column_legend,
)
from cradle_jax.train.bundle import ModelBundle, library_versions
from cradle_jax.train.keys import purpose_key

METRICS_NAME = "metrics.json"
TABLES_NAME = "ate_tables.npz"
SPLITS = COLUMNS
HEADLINE = ("ATE_pearsonr", "ATE_r2", "ATE_pearsonr_top20", "jaccard_sim_top20")


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def evaluate(
    bundle: ModelBundle,
    reference: DataReference,
    eval_cfg: ml_collections.ConfigDict,
    *,
    seed: int,
) -> tuple[dict, dict[str, np.ndarray], pd.DataFrame]:
    """All metrics of one model against its data reference, JSON-ready (NaN and inf become
    null); the ATE tables they compare: labels (K,), model_ate, data_ate and data_ate_<split>
    (K, G); and the QC metrics of the cells generated at the real depth (with `perturbation`)."""
    labels = reference.labels
    model = model_ate(
        bundle.params, bundle.cfg, bundle.vocabulary, labels, purpose_key(seed, "evaluate/ate"),
        n_particles=eval_cfg.ate_particles, chunk=eval_cfg.ate_chunk,
        from_means=eval_cfg.ate_from_means,
    )  # fmt: skip
    split_mode = bundle.config.data.split
    metrics = {
        "ate": split_metrics(reference, model),
        "columns": column_legend(split_mode, bool(reference.data_ate_by_split)),
    }
    if reference.true_ate is not None:
        metrics["truth"] = truth_metrics(reference.true_ate, model, reference.true_top)
        metrics["truth_by_split"] = _truth_by_split(reference, model)
    qc, generated = qc_results(
        bundle, labels, reference.qc_library_sizes, reference.real_median_library,
        reference.headline_split, eval_cfg, seed=seed,
    )  # fmt: skip
    metrics["qc"] = {
        **qc,
        "real_median_library": reference.real_median_library,
        "real_pass_rate_t3": reference.real_pass_rate,
    }
    if reference.test_iwelbo is not None:
        metrics["test_iwelbo"] = reference.test_iwelbo
    split = reference.headline_split
    metrics["headline"] = {
        "split": split,
        **{name: metrics["ate"][f"{name}-{split}"] for name in HEADLINE},
        "qc_pass_rate_t3": qc["depth_matched"]["qc_pass_rate_t3"],
        "qc_pass_rate_t3_library_1e4": qc["library_1e4"]["qc_pass_rate_t3"],
    }
    metrics["versions"] = {"trained_with": bundle.versions, "evaluated_with": library_versions()}
    metrics["baselines"] = {}
    for name, table in reference.baseline_ate.items():
        ate = split_metrics(reference, table)
        headline = {metric: ate[f"{metric}-{split}"] for metric in HEADLINE}
        metrics["baselines"][name] = {"headline": headline, "ate": ate}
    tables = {"labels": np.asarray(labels), "model_ate": model, "data_ate": reference.data_ate}
    tables.update({f"data_ate_{s}": t for s, t in reference.data_ate_by_split.items()})
    tables.update({f"baseline_{name}_ate": t for name, t in reference.baseline_ate.items()})
    return _json_safe(metrics), tables, generated


def _truth_by_split(reference: DataReference, model: np.ndarray) -> dict[str, dict]:
    """Planted-truth metrics on each split's labels (e.g. the unseen pairs of `test`)."""
    result = {}
    for split in SPLITS[1:]:
        rows = [reference.labels.index(label) for label in reference.labels_by_split[split]]
        if rows:
            top = {k: sets[rows] for k, sets in reference.true_top.items()}
            result[split] = truth_metrics(reference.true_ate[rows], model[rows], top)
    return result


def write_results(metrics: dict, tables: dict[str, np.ndarray], directory: str | Path) -> Path:
    """metrics.json and ate_tables.npz in `directory`, each atomically."""
    directory = Path(directory)
    with atomic.replacing(directory / TABLES_NAME) as tmp:
        np.savez(tmp, **tables)
    path = directory / METRICS_NAME
    atomic.write_json(path, metrics)
    return path
