"""What the objective needs from the data layer: per-split statistics and batch dictionaries."""

import numpy as np

from cradle_jax.data.batches import Batch
from cradle_jax.data.dataset import PerturbData
from cradle_jax.models.config import ModelConfig, default_model_config

BATCH_FIELDS = ("X", "D", "qc", "reference_X", "library_size", "weight")


def split_stats(data: PerturbData, split: str) -> dict[str, np.ndarray]:
    """Obs-count vectors of `split`, training normalisation, training fail share
    (docs/data.md#split-statistics).

    The fail share is α in `loss.alpha = "split"` mode; it always comes from the training split.
    """
    counts = data.obs_counts[split]
    train = data.cells("train")
    return {
        "obs_dosage": counts.dosage,
        "obs_qc": counts.qc,
        "norm_mean": data.normalization.mean,
        "norm_std": data.normalization.std,
        "fail_fraction": np.float32((data.qc[train].max(axis=1) > 0).mean()),
    }


def batch_arrays(batch: Batch) -> dict[str, np.ndarray]:
    """The fields of a batch the model reads (the dataset row index stays on the host)."""
    return {name: getattr(batch, name) for name in BATCH_FIELDS}


def sized_model_config(data: PerturbData, **overrides) -> ModelConfig:
    """The default ModelConfig with `overrides`, sized to the dataset: G genes, T perturbations,
    Q QC columns."""
    return default_model_config(
        n_genes=len(data.gene_names),
        n_perturbations=data.vocabulary.size,
        n_qc=data.qc.shape[1],
        **overrides,
    )
