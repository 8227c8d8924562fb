"""Generated artifact-free cells as AnnData, with QC metrics: from the prior (`cradle-jax
generate`) or as counterfactuals of real cells."""

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cradle_jax import atomic
from cradle_jax.config import EVAL_LIBRARY
from cradle_jax.data.errors import DataError
from cradle_jax.evaluate.generation.counterfactual import counterfactual_counts
from cradle_jax.evaluate.generation.names import generated_cell_names
from cradle_jax.evaluate.generation.prior import generate_cells
from cradle_jax.evaluate.generation.qc_metrics import generated_qc
from cradle_jax.models.families import check_dosage
from cradle_jax.train.bundle import ModelBundle
from cradle_jax.train.keys import purpose_key

log = logging.getLogger(__name__)


def parse_perturbations(text: str, bundle: ModelBundle) -> list[str]:
    """Canonical labels of a comma-separated list; an unknown single is a DataError naming it.

    Any combination of known singles is allowed, seen in training or not. A label given twice,
    also in another order of its singles ("A+B,B+A"), is refused: the output has one group of
    cells per label.
    """
    labels = [label.strip() for label in text.split(",") if label.strip()]
    if not labels:
        raise DataError("no perturbation given: pass e.g. --perturbations 'A,B+C'")
    canonical = [bundle.vocabulary.canonical(label) for label in labels]
    first: dict[str, str] = {}
    for given, label in zip(labels, canonical, strict=True):
        if label in first:
            same = "" if given == first[label] else f" (as {first[label]!r}; the same label)"
            raise DataError(f"--perturbations lists {given!r} twice{same}: give each label once")
        first[label] = given
    return canonical


def generated_counts(
    bundle: ModelBundle,
    labels: list[str],
    n_cells: int,
    *,
    key_data: np.ndarray,
    library: float | np.ndarray,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """`n_cells` artifact-free count vectors per label (CSR float32, label by label) and the
    label of each cell; DataError for a non-positive size or a model that cannot take a label."""
    if n_cells < 1:
        raise DataError(f"--n_cells must be at least 1, got {n_cells}")
    values = np.asarray(library, dtype=np.float64)
    if values.size == 0 or not np.all(values > 0):
        shown = library if values.ndim == 0 else f"{np.sort(values)[:3]}..."
        raise DataError(f"--library (library size of generated cells) must be > 0, got {shown}")
    dosage = bundle.vocabulary.dosage(labels).toarray()
    check_dosage(bundle.cfg, dosage, labels)
    cells = generate_cells(bundle.params, bundle.cfg, dosage, n_cells, key_data, library=library)
    counts = sp.csr_matrix(cells.reshape(-1, cells.shape[-1]).astype(np.float32))
    return counts, np.repeat(np.asarray(labels, dtype=object), n_cells)


def generation_depth(bundle: ModelBundle, library: float | None) -> tuple[float | np.ndarray, dict]:
    """The library size of every generated cell, or the sizes each cell draws its own from, and
    how uns['cradle_jax'] records them: `library` when given; else the training data's depth
    the model records (docs/data.md#training-depth); else, for a model saved before that
    record, EVAL_LIBRARY, with one warning line saying so."""
    if library is not None:
        return float(library), {"fixed": float(library)}
    depth = bundle.training_depth
    if depth is None:
        log.warning(
            "this model was saved without its training data's depth (by an older cradle-jax): "
            "generated cells get library size %g; give --library N for another depth",
            EVAL_LIBRARY,
        )
        return EVAL_LIBRARY, {"fixed": EVAL_LIBRARY, "why": "the model records no training depth"}
    return depth.library_sizes, depth.record()


def generated_anndata(
    bundle: ModelBundle,
    labels: list[str],
    n_cells: int,
    *,
    seed: int,
    library: float | None = None,
    doublets: bool = True,
) -> ad.AnnData:
    """`n_cells` artifact-free cells per label, basal states from the prior: raw counts in X
    (CSR), obs `perturbation` and the QC metrics of each cell, deterministic in `seed`. Each
    cell's library size is `library`, or by default drawn from the training data's depth
    (`generation_depth`)."""
    depth, depth_record = generation_depth(bundle, library)
    counts, cell_labels = generated_counts(
        bundle, labels, n_cells, key_data=purpose_key(seed, "generate"), library=depth
    )
    names = generated_cell_names(cell_labels)
    provenance = {"library_size": depth_record, "source": "prior"}
    return _annotated(bundle, counts, cell_labels, labels, names, seed, doublets, provenance)


def counterfactual_anndata(
    bundle: ModelBundle,
    adata: ad.AnnData,
    labels: list[str],
    *,
    seed: int,
    library: float | None = None,
    doublets: bool = True,
) -> ad.AnnData:
    """Every cell of `adata` decoded under every label, artifact-free, basal states from the
    guide (see `counterfactual`): label by label, cells in `adata`'s order, obs `perturbation`,
    `source_cell` (the real cell's name) and QC metrics. `library` None keeps each cell's own
    library size."""
    counts = counterfactual_counts(
        bundle, adata, labels, purpose_key(seed, "counterfactual"), library=library
    )
    counts = sp.csr_matrix(counts.reshape(-1, counts.shape[-1]))
    cell_labels = np.repeat(np.asarray(labels, dtype=object), adata.n_obs)
    sources = np.tile(np.asarray(adata.obs_names, dtype=str), len(labels))
    names = [f"{label}|{cell}" for label, cell in zip(cell_labels, sources, strict=True)]
    provenance = {
        "library_size": "own" if library is None else float(library),
        "source": "cells",
    }
    result = _annotated(bundle, counts, cell_labels, labels, names, seed, doublets, provenance)
    result.obs.insert(1, "source_cell", sources)
    return result


def _annotated(bundle, counts, cell_labels, labels, names, seed, doublets, provenance):
    """Cells as AnnData with their QC metrics and provenance in uns['cradle_jax']."""
    metrics = generated_qc(
        counts, cell_labels, bundle.gene_names, seed=seed, doublets=doublets,
        doublet_threshold=bundle.qc_thresholds.for_generated_cells().doublet_score,
    )  # fmt: skip
    obs = metrics.table.copy()
    obs.insert(0, "perturbation", pd.Categorical(cell_labels.astype(str), categories=labels))
    obs.index = pd.Index(names)
    adata = ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=bundle.gene_names.astype(str)))
    adata.uns["cradle_jax"] = {
        **provenance,
        "seed": seed,
        "path": "good (artifact-free)",
        "versions": bundle.versions,
    }
    return adata


def write_anndata(adata: ad.AnnData, out: str | Path) -> Path:
    """Write .h5ad atomically (see `cradle_jax.atomic.replacing`)."""
    with atomic.replacing(out) as tmp:
        adata.write_h5ad(tmp)
    return Path(out)
