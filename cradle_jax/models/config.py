"""Defaults of the `model` section of an experiment config, and the CradleConfig it resolves to."""

from dataclasses import fields

import ml_collections

from cradle_jax.models.cradle import CradleConfig

MODEL_NAMES = ("cradle",)
DATA_SIZED_FIELDS = ("n_genes", "n_perturbations", "n_qc")  # read off the dataset, not configured


def model_config() -> ml_collections.ConfigDict:
    """`name` plus every architecture and prior field of CradleConfig with its default (§6)."""
    c = ml_collections.ConfigDict()
    c.name = "cradle"
    for field in fields(CradleConfig):
        if field.name not in DATA_SIZED_FIELDS:
            setattr(c, field.name, field.default)
    return c


def resolve_model_config(
    model: ml_collections.ConfigDict, n_genes: int, n_perturbations: int, n_qc: int
) -> CradleConfig:
    """The CradleConfig of a `model` section for a dataset of the given sizes."""
    if model.name not in MODEL_NAMES:
        raise ValueError(f"model.name must be one of {MODEL_NAMES}, got {model.name!r}")
    values = {k: v for k, v in model.items() if k != "name"}
    return CradleConfig(n_genes=n_genes, n_perturbations=n_perturbations, n_qc=n_qc, **values)
