"""The plots of one evaluation, written under `plots/` (what `evaluate --workdir` draws).

QC violins of the label whose real cells fail QC most often, the real cells beside cells
generated at their depth and on the same QC basis (docs/metrics.md#qc-basis); the basal-latent
embedding coloured by QC status and perturbation; the model-vs-data ATE scatter.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from cradle_jax.data.dataset import PerturbData
from cradle_jax.data.qc import QCThresholds
from cradle_jax.evaluate.generation.latent import basal_latents
from cradle_jax.evaluate.report import embedding, plots
from cradle_jax.train.bundle import ModelBundle
from cradle_jax.train.keys import purpose_key

PLOTS_DIR = "plots"


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
        embedding.latent_embedding(
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
    the real cells' metrics over the model's genes and the thresholds fitted on those. Either
    table is indexed by the row positions of its cells: every cell, or the sample of a large
    file that the generated cells' basis was fitted on."""
    real = data.qc_metrics if data.qc_metrics.matrix is None else data.qc_metrics.matrix
    return (
        real.table[data.labels[real.table.index.to_numpy()] == label],
        generated[generated["perturbation"] == label],
        thresholds.for_generated_cells(),
    )
