"""The latent-embedding plot of an evaluation: basal latents of real cells in two dimensions,
coloured by QC status and by perturbation (docs/metrics.md).

Written as a PNG atomically (`canvas.save_png`). Output is deterministic for fixed inputs and
seed: the subsample and UMAP draw from the seed.
"""

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cradle_jax.evaluate.report.canvas import new_figure, save_png

MIN_UMAP_CELLS = 15  # UMAP's default 15 neighbours need more cells than that; fewer get PCA
MAX_COLOURED = 20  # perturbations with their own colour in the embedding; the rest are "other"
_CONTROL_GREY, _OTHER_GREY = "#9a9a9a", "#d9d9d9"
_PASS, _FAIL = "#4c72b0", "#d62728"


def latent_embedding(
    z: np.ndarray,
    qc_fail: np.ndarray,
    labels: np.ndarray,
    path: str | os.PathLike,
    *,
    seed: int,
    control: str,
    max_cells: int = 20000,
) -> Path:
    """A 2-D embedding of basal latents, coloured by QC status and by perturbation.

    A model that disentangles artifacts should not separate passing and failing cells in z_b
    (the artifact lives in the QC path), nor should perturbations cluster there (their effect
    lives in the perturbation path).

    Args:
      z: (N, L) basal latents, one row per cell.
      qc_fail: (N,) bool or 0/1, 1 = the cell failed QC (the project's sign convention).
      labels: (N,) perturbation label of each cell; `control` cells are grey, the MAX_COLOURED
        most frequent other labels get their own colour, the rest are "other".
      path: where the PNG goes; its directory must exist.
      seed: seeds the subsample and UMAP.
      max_cells: at most this many cells are embedded (uniform subsample without replacement).
      control: the control label.

    L = 2 is plotted as is; N < MIN_UMAP_CELLS uses PCA (UMAP's neighbour graph needs more
    cells); otherwise scanpy's neighbours + UMAP. The method is named in the axis labels.
    """
    z, qc_fail, labels = _checked_cells(z, qc_fail, labels)
    if len(z) > max_cells:
        keep = np.sort(np.random.default_rng(seed).choice(len(z), size=max_cells, replace=False))
        z, qc_fail, labels = z[keep], qc_fail[keep], labels[keep]
    coords, method = _embed(z, seed)

    figure = new_figure(13.0, 5.6)
    ax_qc, ax_pert = figure.subplots(1, 2)
    point = max(1.0, min(20.0, 4000.0 / len(z)))  # fewer cells, bigger dots
    _qc_status(ax_qc, coords, qc_fail, point)
    _perturbations(ax_pert, coords, labels, control, point)
    for ax in (ax_qc, ax_pert):
        ax.set_xlabel(f"{method} 1")
        ax.set_ylabel(f"{method} 2")
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle(f"basal latent z_b: {len(z)} cells, L = {z.shape[1]}")
    return save_png(figure, path)


def _checked_cells(
    z: np.ndarray, qc_fail: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """z as float32 (N, L), qc_fail as bool (N,), labels as str (N,); ValueError naming the
    shapes unless they agree, or if there is no cell."""
    z = np.asarray(z, dtype=np.float32)
    qc_fail = np.asarray(qc_fail).astype(bool)
    labels = np.asarray(labels).astype(str)
    if z.ndim != 2 or qc_fail.shape != (len(z),) or labels.shape != (len(z),):
        raise ValueError(
            f"need z (N, L), qc_fail (N,), labels (N,); got {z.shape}, {qc_fail.shape}, "
            f"{labels.shape}"
        )
    if len(z) == 0:
        raise ValueError("no cells to embed")
    return z, qc_fail, labels


def _group(ax, coords, chosen, name: str, colour, point: float, alpha: float) -> None:
    """The cells `chosen` as one labelled scatter group, with their number in the legend."""
    ax.scatter(
        *coords[chosen].T,
        s=point,
        color=colour,
        alpha=alpha,
        linewidths=0,
        label=f"{name} ({chosen.sum()})",
        rasterized=True,
    )


def _qc_status(ax, coords: np.ndarray, qc_fail: np.ndarray, point: float) -> None:
    """The left panel: passing and failing cells in two colours."""
    for fail, name, colour in ((False, "pass", _PASS), (True, "fail", _FAIL)):
        _group(ax, coords, qc_fail == fail, name, colour, point, alpha=0.6)
    ax.set_title("QC status")
    ax.legend(loc="best", fontsize=8, markerscale=max(1.0, 12.0 / point))


def _perturbations(ax, coords: np.ndarray, labels: np.ndarray, control: str, point: float) -> None:
    """The right panel: cells coloured by perturbation (`_perturbation_groups`)."""
    for name, colour, chosen in _perturbation_groups(labels, control):
        _group(ax, coords, chosen, name, colour, point, alpha=0.7)
    ax.set_title("perturbation")
    ax.legend(
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        fontsize=7,
        frameon=False,
        markerscale=max(1.0, 12.0 / point),
    )


def _embed(z: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """(N, 2) coordinates of (N, L) latents and the method's name for the axis labels."""
    if z.shape[1] == 2:
        return z.astype(np.float64), "z"
    if len(z) < MIN_UMAP_CELLS or z.shape[1] < 2:
        return _pca_2d(z), "PC"
    import anndata as ad  # lazy: scanpy/umap take seconds to import (numba compilation)
    import scanpy as sc

    adata = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(len(z))]))
    adata.obsm["X_latent"] = z
    sc.pp.neighbors(adata, n_neighbors=15, use_rep="X_latent", random_state=seed)
    sc.tl.umap(adata, random_state=seed)
    return np.asarray(adata.obsm["X_umap"], dtype=np.float64), "UMAP"


def _pca_2d(z: np.ndarray) -> np.ndarray:
    """(N, 2) scores on the first two principal axes (sklearn's PCA), zero-padded when L < 2;
    all zero when the cells do not differ, where sklearn would warn of a zero variance.

    sklearn fixes each axis's sign so its largest-magnitude loading is positive: SVD signs are
    otherwise arbitrary and the plot would flip between LAPACK builds.
    """
    z = z.astype(np.float64)
    if len(z) < 2 or not np.ptp(z, axis=0).any():
        return np.zeros((len(z), 2))
    from sklearn.decomposition import PCA  # lazy: its import slows every command's start

    # "full": for tall inputs "auto" takes the less accurate covariance eigendecomposition.
    scores = PCA(n_components=min(2, z.shape[1]), svd_solver="full").fit_transform(z)
    return np.pad(scores, ((0, 0), (0, 2 - scores.shape[1])))


def _perturbation_groups(labels: np.ndarray, control: str) -> list[tuple[str, str, np.ndarray]]:
    """(legend name, colour, (N,) bool) per group, drawn in this order (background first).

    The MAX_COLOURED most frequent non-control labels (ties broken by name, for determinism)
    get tab20 colours; the others are pooled as "other" in light grey, controls in mid grey.
    """
    from matplotlib import colormaps

    names, counts = np.unique(labels[labels != control], return_counts=True)
    order = sorted(range(len(names)), key=lambda i: (-counts[i], names[i]))
    coloured = [str(names[i]) for i in order[:MAX_COLOURED]]
    # tab20 without its two greys (they would pass for controls/"other"), topped up from tab20b.
    tab20, tab20b = colormaps["tab20"].colors, colormaps["tab20b"].colors
    palette = [c for i, c in enumerate(tab20) if i not in (14, 15)] + [tab20b[4], tab20b[16]]
    groups = []
    other = (labels != control) & ~np.isin(labels, coloured)
    if other.any():
        groups.append((f"other ({len(names) - len(coloured)} perturbations)", _OTHER_GREY, other))
    if (labels == control).any():
        groups.append((control, _CONTROL_GREY, labels == control))
    groups += [(name, palette[i % len(palette)], labels == name) for i, name in enumerate(coloured)]
    return groups
