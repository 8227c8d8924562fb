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
from cradle_jax.data.dataset import PerturbData
from cradle_jax.data.qc import QCThresholds
from cradle_jax.evaluate.generation.latent import basal_latents
from cradle_jax.evaluate.report import plots
from cradle_jax.evaluate.scores.ate import model_ate
from cradle_jax.evaluate.scores.data_reference import DataReference, split_metrics
from cradle_jax.evaluate.scores.metrics import truth_metrics
from cradle_jax.evaluate.scores.qc_depth import PAPER_LABEL, qc_results
from cradle_jax.evaluate.scores.split_reference import (
    COLUMNS,
    column_legend,
)
from cradle_jax.train.bundle import ModelBundle, library_versions
from cradle_jax.train.keys import purpose_key

METRICS_NAME = "metrics.json"
PLOTS_DIR = "plots"
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


def write_plots(
    bundle: ModelBundle,
    data: PerturbData,
    tables: dict[str, np.ndarray],
    generated: pd.DataFrame,
    directory: str | Path,
    *,
    seed: int,
    max_cells: int = 5000,
) -> list[Path]:
    """QC violins (real cells vs cells generated at their depth, on the same QC basis) for the
    label whose real cells fail QC most often, the basal-latent embedding coloured by QC status
    and perturbation, and the ATE scatter."""
    directory = Path(directory) / PLOTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    t = bundle.config.data.qc_threshold
    failed = data.qc.max(axis=1) > 0
    labels = tables["labels"]
    fail_rates = [failed[data.labels == label].mean() for label in labels]
    worst = str(labels[int(np.argmax(fail_rates))])
    real, generated, thresholds = violin_sides(data, bundle.qc_thresholds, generated, worst)
    paths = [
        plots.qc_violins(
            real, generated, thresholds, t, worst,
            directory / f"qc_violins_{worst.replace(bundle.vocabulary.separator, '_')}.png",
            generated_at="at the real cells' depth",
        ),
        plots.ate_scatter(
            tables["data_ate"], tables["model_ate"], labels, directory / "ate_scatter.png"
        ),
    ]  # fmt: skip
    rng = np.random.default_rng(seed)
    cells = np.sort(rng.permutation(data.n_cells)[:max_cells])
    z = basal_latents(bundle, data, cells, purpose_key(seed, "evaluate/latent"))
    paths.append(
        plots.latent_embedding(
            z, failed[cells], data.labels[cells], directory / "latent_embedding.png", seed=seed,
            control=bundle.vocabulary.control_label,
        )
    )  # fmt: skip
    return paths


def violin_sides(
    data: PerturbData, thresholds: QCThresholds, generated: pd.DataFrame, label: str
) -> tuple[pd.DataFrame, pd.DataFrame, QCThresholds]:
    """The QC metrics of the real and of the generated cells of `label` that the violins
    compare, and the thresholds they draw, all on the basis generated cells are scored on
    (docs/metrics.md#qc-basis): where some real metric came from obs (whole-transcriptome),
    the real cells' metrics over the model's genes and the thresholds fitted on those."""
    real = data.qc_metrics if data.qc_metrics.matrix is None else data.qc_metrics.matrix
    return (
        real.table[data.labels[real.table.index.to_numpy()] == label],  # the basis is a sample
        generated[generated["perturbation"] == label],
        thresholds.for_generated_cells(),
    )


def _number(value) -> str:
    return "—" if value is None else f"{value:.4f}"


def report(metrics: dict) -> str:
    """The headline row (docs/metrics.md#headline), every ATE metric per column with what each
    column compares with, the QC pass rates, and the baselines' and planted truth's rows."""
    head = metrics["headline"]
    scores = ", ".join(f"{name} {_number(head[name])}" for name in (*HEADLINE, "qc_pass_rate_t3"))
    lines = [
        f"headline ({head['split']} split): {scores} (at the real depth; "
        f"{PAPER_LABEL} {_number(head.get('qc_pass_rate_t3_library_1e4'))})",
        "",
        f"{'metric':<22}" + "".join(f"{split:>10}" for split in SPLITS),
    ]
    names = sorted({key.rsplit("-", 1)[0] for key in metrics["ate"]})
    for name in names:
        row = "".join(f"{_number(metrics['ate'].get(f'{name}-{s}')):>10}" for s in SPLITS)
        lines.append(f"{name:<22}{row}")
    lines.append("columns (reference: the real cells whose data ATE a column compares with):")
    lines += [f"  {split}: {text}" for split, text in metrics["columns"].items()]
    lines += ["", *_qc_lines(metrics["qc"])]
    if "test_iwelbo" in metrics:
        lines.append(f"test IWELBO: {metrics['test_iwelbo']:.4f}")
    for name, baseline in metrics.get("baselines", {}).items():
        head = baseline["headline"]
        scores = ", ".join(f"{metric} {_number(head[metric])}" for metric in HEADLINE)
        lines.append(f"baseline {name} ({metrics['headline']['split']} split): {scores}")
    for key, value in metrics.get("truth", {}).items():
        lines.append(f"planted truth {key}: {_number(value)}")
    for split, values in metrics.get("truth_by_split", {}).items():
        scores = ", ".join(f"{key} {_number(value)}" for key, value in values.items())
        lines.append(f"planted truth ({split} split): {scores}")
    return "\n".join(lines)


def _qc_lines(qc: dict) -> list[str]:
    """The QC pass rates of generated cells (at the real depth, then at ℓ = 10⁴) and of real
    cells, and the criteria they were judged by."""
    depth = qc["depth"]
    titles = {
        "depth_matched": f"at the real depth ({depth['drawn_from']}; median library "
        f"{depth['real_median']:.0f} real, {depth['generated_median']:.0f} generated)",
        "library_1e4": PAPER_LABEL,
    }
    lines = []
    for key, title in titles.items():
        rates = ", ".join(f"t={t} {_number(qc[key][f'qc_pass_rate_t{t}'])}" for t in (3, 4, 5))
        lines.append(f"QC pass rate of generated cells {title}: {rates}")
    lines.append(f"QC pass rate of real cells (t=3): {_number(qc['real_pass_rate_t3'])}")
    criteria = [name.removeprefix("qc_") for name in qc["depth_matched"].get("criteria", [])]
    unused = (
        ""
        if "predicted_doublet" in criteria
        else "; no doublet call (Scrublet could not fit one on the real cells or called none)"
    )
    lines.append(f"QC criteria of generated cells: {', '.join(criteria) or 'none'}{unused}")
    return lines + _basis_lines(qc["depth_matched"].get("basis", {}))


def _basis_lines(basis: dict[str, str]) -> list[str]:
    """How generated cells were judged on each QC metric, one line each, when some metric was
    not judged (docs/metrics.md#qc-basis); nothing when every one was."""
    if not any(text.startswith("not judged") for text in basis.values()):
        return []
    lines = ["how generated cells were judged on each QC metric:"]
    return lines + [f"  {metric}: {text}" for metric, text in basis.items()]
