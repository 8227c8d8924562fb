"""A notebook API in the scvi-tools style over the functions the command line runs.

    model = cradle_jax.CradleVAE(adata, workdir="runs/nb", n_latent=10, max_epochs=50)
    model.train()
    cells = model.predict(perturbation=["A", "A+B"], n_cells=200)  # artifact-free AnnData
    what_if = model.predict(controls, perturbation="A+B", source="cells")  # these cells under A+B
    z = model.get_latent(adata)                          # (N, L) basal latents of its cells
    metrics = model.evaluate()                           # the metrics.json dictionary
    model.save("model.cradle"); model = cradle_jax.CradleVAE.load("model.cradle")

Settings are config fields (see experiments/configs/default.py), given by name when the name
is unique across sections (`n_latent=10`) or as "section.field" (`**{"eval.qc_cells": 50}`).
"""

import tempfile
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import ml_collections
import numpy as np

from cradle_jax.config import default_config
from cradle_jax.data.dataset import PerturbData, load_perturb_data
from cradle_jax.evaluate.config import eval_settings
from cradle_jax.evaluate.generation.cells import counterfactual_anndata, generated_anndata
from cradle_jax.evaluate.generation.latent import basal_latents, encode_cells
from cradle_jax.evaluate.report.export import export_model, load_export
from cradle_jax.evaluate.report.run import evaluate
from cradle_jax.evaluate.scores.data_reference import DataReference, data_reference
from cradle_jax.train.bundle import ModelBundle, load_workdir
from cradle_jax.train.keys import purpose_key
from cradle_jax.train.loop import train_and_evaluate
from cradle_jax.xla_flags import tune_cpu_backend

tune_cpu_backend()  # effective when this import precedes the process's first JAX computation

DATA_FILE = "data.h5ad"


def _apply_settings(config: ml_collections.ConfigDict, settings: dict) -> None:
    """Set each field by "section.field" or by a field name unique across sections."""
    sections = [
        name for name, value in config.items() if isinstance(value, ml_collections.ConfigDict)
    ]
    for name, value in settings.items():
        if "." in name:
            section, field = name.split(".", 1)
            owners = [section] if section in sections and field in config[section] else []
        else:
            field = name
            owners = [s for s in sections if field in config[s]]
            if name in config and name not in sections:
                config[name] = value
                continue
        if len(owners) != 1:
            where = "no config section" if not owners else f"sections {', '.join(owners)}"
            raise ValueError(f"setting {name!r}: {where} has it; use 'section.field'")
        config[owners[0]][field] = value


class CradleVAE:
    """CRADLE-VAE on one AnnData: train, predict artifact-free cells, latents, metrics, save."""

    def __init__(
        self, adata: ad.AnnData | str, workdir: str | Path | None = None, **settings
    ) -> None:
        self.config = default_config()
        _apply_settings(self.config, settings)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="cradle_jax_"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        if isinstance(adata, ad.AnnData):
            path = self.workdir / DATA_FILE
            adata.write_h5ad(path)
            self.config.data.path = str(path)
        else:
            self.config.data.path = str(adata)
        self._bundle: ModelBundle | None = None
        self._reference: DataReference | None = None
        self._data: PerturbData | None = None

    def train(self) -> dict:
        """Train (or resume) in the workdir; the training summary."""
        summary = train_and_evaluate(self.config, self.workdir)
        self._bundle = load_workdir(self.workdir)
        return summary

    @property
    def bundle(self) -> ModelBundle:
        if self._bundle is None:
            raise RuntimeError("the model is not trained: call train() or CradleVAE.load(path)")
        return self._bundle

    def _training_data(self) -> PerturbData:
        if self._data is None:
            config = self.bundle.config
            self._data = load_perturb_data(config.data.path, config.data, config.seed)
        return self._data

    def predict(
        self,
        adata: ad.AnnData | None = None,
        perturbation: str | Sequence[str] | None = None,
        *,
        source: str = "prior",
        n_cells: int | None = None,
        library: float | None = None,
    ) -> ad.AnnData:
        """Artifact-free cells under a perturbation or an unseen combination of known singles.

        source="prior": "what do cells under X look like?" `n_cells` new cells per label (default
        100, or as many as `adata` has), basal states drawn from the prior, library size
        `library` (default: each cell draws one of the library sizes of the training data's
        QC-pass control cells, docs/data.md#training-depth). source="cells": "what would these
        cells look like under X?" every cell of `adata` (e.g. the controls) with its own basal
        state, encoded by the guide, decoded under each label without the artifact; library
        size each cell's own unless `library` is given. Raw counts in X, QC metrics and
        `perturbation` in obs.
        """
        if perturbation is None:
            raise ValueError("predict needs perturbation='A' (or a list, e.g. ['A', 'A+B'])")
        names = [perturbation] if isinstance(perturbation, str) else list(perturbation)
        labels = [self.bundle.vocabulary.canonical(label) for label in names]
        seed = self.bundle.config.seed
        if source == "cells":
            if adata is None:
                raise ValueError("source='cells' needs the cells: predict(adata, ...)")
            if n_cells is not None:
                raise ValueError("source='cells' predicts every cell of adata; drop n_cells")
            return counterfactual_anndata(self.bundle, adata, labels, seed=seed, library=library)
        if source != "prior":
            raise ValueError(f"source must be 'prior' or 'cells', got {source!r}")
        if n_cells is None:
            n_cells = 100 if adata is None else adata.n_obs
        return generated_anndata(self.bundle, labels, n_cells, seed=seed, library=library)

    def get_latent(self, adata: ad.AnnData | None = None) -> np.ndarray:
        """(N, L) basal latent means of `adata`'s cells (default: the training AnnData's), in
        its order. Other cells need the model's genes and known perturbation labels."""
        key = purpose_key(self.bundle.config.seed, "api/latent")
        if adata is not None:
            return encode_cells(self.bundle, adata, key)
        data = self._training_data()
        return basal_latents(self.bundle, data, np.arange(data.n_cells), key)

    def _data_reference(self) -> DataReference:
        """The data side of the evaluation, computed once from the training data."""
        if self._reference is None:
            seed = self.bundle.config.seed
            self._reference = data_reference(
                self.bundle, self._training_data(), eval_settings(self.bundle.config), seed=seed
            )
        return self._reference

    def evaluate(self) -> dict:
        """The metrics of `cradle-jax evaluate` (see metrics.json) as a dictionary."""
        reference, settings = self._data_reference(), eval_settings(self.bundle.config)
        metrics, _, _ = evaluate(self.bundle, reference, settings, seed=self.bundle.config.seed)
        return metrics

    def save(self, path: str | Path) -> Path:
        """Export the model and its evaluation reference to one file."""
        return export_model(self.bundle, self._data_reference(), path)

    @classmethod
    def load(cls, path: str | Path) -> "CradleVAE":
        """A model from an export: predict and evaluate work without the training data."""
        bundle, reference = load_export(path)
        model = cls.__new__(cls)
        model.config, model.workdir = bundle.config, None
        model._bundle, model._reference, model._data = bundle, reference, None
        return model
