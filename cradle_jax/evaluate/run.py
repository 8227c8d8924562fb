"""`cradle-jax evaluate`: every metric of docs/metrics.md for a trained model, to metrics.json.

Model ATE from generated artifact-free cells, data ATE from the QC-pass cells of every split,
their agreement per split (all/train/val/test; full and top-20 Pearson and R², Jaccard@20/50),
the QC pass rate of generated cells under the real data's thresholds at t = 3, 4, 5 (at ℓ = 10⁴
and at the real median library size), the test IWELBO, and, for simulated data, the agreement
with the planted truth. Every random draw comes from the run's seed, so evaluating the same
model twice gives the same numbers.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import ml_collections
import numpy as np
import pandas as pd

from cradle_jax import atomic
from cradle_jax.data.dataset import PerturbData
from cradle_jax.data.splits import SPLIT_CODES
from cradle_jax.evaluate import plots
from cradle_jax.evaluate.ate import data_ate, model_ate
from cradle_jax.evaluate.generate import EVAL_LIBRARY, generate_cells
from cradle_jax.evaluate.latent import basal_latents
from cradle_jax.evaluate.metrics import split_ate_metrics, truth_metrics
from cradle_jax.evaluate.qc_rate import score_generated_cells
from cradle_jax.evaluate.simple_baselines import baseline_ates
from cradle_jax.train.bundle import ModelBundle, library_versions
from cradle_jax.train.iwelbo import split_iwelbo
from cradle_jax.train.keys import purpose_key
from cradle_jax.train.mesh import data_mesh, replicate

METRICS_NAME = "metrics.json"
PLOTS_DIR = "plots"
TABLES_NAME = "ate_tables.npz"
SPLITS = ("all", "train", "val", "test")
HEADLINE = ("ATE_pearsonr", "ATE_r2", "ATE_pearsonr_top20", "jaccard_sim_top20")


def labels_by_split(data: PerturbData) -> dict[str, list[str]]:
    """The treatment labels (control excluded) with at least one cell in each split."""
    control = data.vocabulary.control_label
    result = {"all": sorted(set(data.labels) - {control})}
    for split in SPLITS[1:]:
        observed = set(data.labels[data.split == SPLIT_CODES[split]])
        result[split] = sorted(observed - {control})
    return result


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


def _generated_qc(bundle, labels, n_cells, library, eval_cfg, seed, purpose):
    """Generate `n_cells` per label (control included) at `library`: QC metrics and rates."""
    dosage = bundle.vocabulary.dosage(labels).toarray()
    cells = generate_cells(
        bundle.params, bundle.cfg, dosage, n_cells, purpose_key(seed, purpose),
        library=library, chunk=eval_cfg.ate_chunk,
    )  # fmt: skip
    counts = cells.reshape(-1, cells.shape[-1])
    cell_labels = np.repeat(np.asarray(labels, dtype=object), n_cells)
    metrics, rates = score_generated_cells(
        counts, cell_labels, bundle.gene_names, bundle.qc_thresholds,
        seed=seed, doublets=eval_cfg.qc_doublets,
    )  # fmt: skip
    return metrics.table.assign(perturbation=cell_labels), rates


@dataclass(frozen=True)
class DataReference:
    """What evaluation needs from the dataset: computed from it, or read from an export.

    labels (K,) the treatment labels (control excluded); data_ate (K, G) on QC-pass cells;
    true_ate and true_top (planted DE sets, k → (K, k)) for simulated data; test_iwelbo of the
    model on the test cells (a model metric, but it needs the cells, so it travels here);
    baseline_ate: name → (K, G) ATE predicted by each non-learned baseline (see
    `simple_baselines`), empty for exports written before they existed.
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


def data_reference(
    bundle: ModelBundle,
    data: PerturbData,
    eval_cfg: ml_collections.ConfigDict,
    *,
    seed: int,
    truth: dict | None = None,
) -> DataReference:
    """The data side of the evaluation of `bundle` on `data` (and its planted truth, if any)."""
    split_labels = labels_by_split(data)
    labels = split_labels["all"]
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
        labels_by_split=split_labels,
        headline_split="test" if bundle.config.data.split == "combinations" else "all",
        data_ate=data_ate(data, labels, qc_pass=True),
        real_median_library=float(np.median(data.library_size)),
        real_pass_rate=float(np.mean(data.qc.max(axis=1) == 0)),
        test_iwelbo=test_iwelbo,
        true_ate=true_ate,
        true_top=true_top,
        baseline_ate=baseline_ates(data, labels),
    )


def evaluate(
    bundle: ModelBundle,
    reference: DataReference,
    eval_cfg: ml_collections.ConfigDict,
    *,
    seed: int,
) -> tuple[dict, dict[str, np.ndarray], pd.DataFrame]:
    """All metrics of one model against its data reference, JSON-ready (NaN and inf become
    null); the ATE tables they compare: labels (K,), model_ate and data_ate (K, G); and the QC
    metrics of the generated cells at ℓ = 10⁴ (with their `perturbation`)."""
    labels = reference.labels
    model = model_ate(
        bundle.params, bundle.cfg, bundle.vocabulary, labels, purpose_key(seed, "evaluate/ate"),
        n_particles=eval_cfg.ate_particles, chunk=eval_cfg.ate_chunk,
        from_means=eval_cfg.ate_from_means,
    )  # fmt: skip
    observed = reference.data_ate
    metrics = {
        "ate": split_ate_metrics(observed, model, np.asarray(labels), reference.labels_by_split)
    }
    if reference.true_ate is not None:
        metrics["truth"] = truth_metrics(reference.true_ate, model, reference.true_top)
        metrics["truth_by_split"] = _truth_by_split(reference, model)
    qc_labels = [bundle.vocabulary.control_label, *labels]
    generated, rates = _generated_qc(
        bundle, qc_labels, eval_cfg.qc_cells, EVAL_LIBRARY, eval_cfg, seed, "evaluate/qc"
    )
    _, rates_at_median = _generated_qc(
        bundle, qc_labels, eval_cfg.qc_cells, reference.real_median_library, eval_cfg, seed,
        "evaluate/qc_med",
    )  # fmt: skip
    metrics["qc"] = {
        "library_1e4": rates,
        "library_real_median": rates_at_median,
        "real_median_library": reference.real_median_library,
        "real_pass_rate_t3": reference.real_pass_rate,
    }
    if reference.test_iwelbo is not None:
        metrics["test_iwelbo"] = reference.test_iwelbo
    split = reference.headline_split
    metrics["headline"] = {
        "split": split,
        **{name: metrics["ate"][f"{name}-{split}"] for name in HEADLINE},
        "qc_pass_rate_t3": metrics["qc"]["library_1e4"]["qc_pass_rate_t3"],
    }
    metrics["versions"] = {"trained_with": bundle.versions, "evaluated_with": library_versions()}
    metrics["baselines"] = {}
    for name, table in reference.baseline_ate.items():
        ate = split_ate_metrics(observed, table, np.asarray(labels), reference.labels_by_split)
        headline = {metric: ate[f"{metric}-{split}"] for metric in HEADLINE}
        metrics["baselines"][name] = {"headline": headline, "ate": ate}
    tables = {"labels": np.asarray(labels), "model_ate": model, "data_ate": observed}
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
    """QC violins (data vs generated) for the label whose real cells fail QC most often, the
    basal-latent embedding coloured by QC status and perturbation, and the ATE scatter."""
    directory = Path(directory) / PLOTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    t = bundle.config.data.qc_threshold
    failed = data.qc.max(axis=1) > 0
    labels = tables["labels"]
    fail_rates = [failed[data.labels == label].mean() for label in labels]
    worst = str(labels[int(np.argmax(fail_rates))])
    real = data.qc_metrics.table[data.labels == worst]
    paths = [
        plots.qc_violins(
            real, generated[generated["perturbation"] == worst], bundle.qc_thresholds, t, worst,
            directory / f"qc_violins_{worst.replace(bundle.vocabulary.separator, '_')}.png",
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


def _number(value) -> str:
    return "—" if value is None else f"{value:.4f}"


def report(metrics: dict) -> str:
    """The headline row (docs/metrics.md#headline) and every ATE metric per split, as text."""
    head = metrics["headline"]
    lines = [
        f"headline ({head['split']} split): "
        + ", ".join(f"{name} {_number(head[name])}" for name in (*HEADLINE, "qc_pass_rate_t3")),
        "",
        f"{'metric':<22}" + "".join(f"{split:>10}" for split in SPLITS),
    ]
    names = sorted({key.rsplit("-", 1)[0] for key in metrics["ate"]})
    for name in names:
        row = "".join(f"{_number(metrics['ate'].get(f'{name}-{s}')):>10}" for s in SPLITS)
        lines.append(f"{name:<22}{row}")
    qc = metrics["qc"]
    lines.append("")
    for key, title in (("library_1e4", "ℓ = 10⁴"), ("library_real_median", "real median ℓ")):
        rates = ", ".join(f"t={t} {_number(qc[key][f'qc_pass_rate_t{t}'])}" for t in (3, 4, 5))
        lines.append(f"QC pass rate of generated cells ({title}): {rates}")
    lines.append(f"QC pass rate of real cells (t=3): {_number(qc['real_pass_rate_t3'])}")
    criteria = [name.removeprefix("qc_") for name in qc["library_1e4"].get("criteria", [])]
    unused = (
        ""
        if "predicted_doublet" in criteria
        else ("; no doublet call (Scrublet could not fit one on the real cells or called none)")
    )
    lines.append(f"QC criteria of generated cells: {', '.join(criteria) or 'none'}{unused}")
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
