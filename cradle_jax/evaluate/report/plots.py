"""Diagnostic plots of an evaluation: QC violins, latent embedding, model-vs-data ATE
(docs/metrics.md).

Each function draws one figure and writes it as a PNG atomically (a temporary file beside the
target, then `os.replace`), so a report never links to a half-written image, and returns the
path. Figures are `matplotlib.figure.Figure` objects on an Agg canvas, never pyplot figures:
nothing is registered in pyplot's global figure list, so repeated calls neither leak memory nor
draw into each other, and no display is needed. Output is deterministic for fixed inputs and
seed: every random draw (subsampling, UMAP, strip-plot jitter) comes from a fixed seed.
"""

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cradle_jax import atomic
from cradle_jax.data.qc import FAIL_BELOW, QC_METRICS, QCThresholds

log = logging.getLogger(__name__)

# The doublet call is boolean: a violin of it says nothing, its share is in the pass rates.
VIOLIN_METRICS: tuple[str, ...] = tuple(m for m in QC_METRICS if m != "predicted_doublet")
MIN_UMAP_CELLS = 15  # UMAP's default 15 neighbours need more cells than that; fewer get PCA
MAX_COLOURED = 20  # perturbations with their own colour in the embedding; the rest are "other"
_DPI = 120
_REAL, _GENERATED = "#4c72b0", "#dd8452"
_CONTROL_GREY, _OTHER_GREY = "#9a9a9a", "#d9d9d9"
_PASS, _FAIL = "#4c72b0", "#d62728"


def _new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas, unknown to pyplot (so nothing global to close)."""
    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | os.PathLike) -> Path:
    """Write `figure` as a PNG at `path` atomically; on any failure leave no file behind.

    The parent directory must exist: a missing one is a caller's mistake worth an error, not
    something to paper over by creating directories in unexpected places.
    """
    path = Path(path)
    with atomic.replacing(path) as tmp:
        # No "Software" text chunk: the bytes then depend only on the drawing.
        figure.savefig(tmp, format="png", dpi=_DPI, metadata={"Software": None})
    return path


# ---------------------------------------------------------------------------------------------
# QC violins
# ---------------------------------------------------------------------------------------------


def qc_violins(
    real: pd.DataFrame,
    generated: pd.DataFrame,
    thresholds: QCThresholds,
    t: float,
    perturbation: str,
    path: str | os.PathLike,
    *,
    pass_rates: Mapping[str, float] | None = None,
    generated_at: str | None = None,
) -> Path:
    """Violins of each continuous QC metric, real vs generated cells, with the real threshold.

    Like the CRADLE paper's Fig. 3/5: generated artifact-free cells should sit inside the real
    data's QC limits while the real cells of the same perturbation show the artifact tail.

    Args:
      real: (N_real, ≥1) QC metrics of the real cells (columns named as in QC_METRICS).
      generated: (N_gen, ≥1) the same metrics of the generated cells.
      thresholds: fitted on all real cells; the dashed line of each panel is
        `thresholds.threshold(metric, t)` (lower limit for UMI_count/ngenes, upper for pct_*).
      t: the MAD multiplier of the drawn thresholds (3, 4 or 5 in the paper).
      perturbation: shown in the title.
      path: where the PNG goes; its directory must exist.
      pass_rates: optional fractions for the title, e.g. {"real": 0.81, "generated": 0.97}.
      generated_at: how the generated cells' depth was chosen, for the title, e.g. "at the real
        cells' depth" (docs/metrics.md#library-size-caveat).

    One panel per metric of VIOLIN_METRICS present in both tables; raises ValueError if none is.
    """
    metrics = [m for m in VIOLIN_METRICS if m in real.columns and m in generated.columns]
    if not metrics:
        raise ValueError(
            f"no continuous QC metric in both tables (real: {list(real.columns)}, "
            f"generated: {list(generated.columns)})"
        )
    figure = _new_figure(2.6 * len(metrics) + 0.6, 4.2)
    axes = np.atleast_1d(figure.subplots(1, len(metrics)))
    for ax, metric in zip(axes, metrics, strict=True):
        groups = [("real", real[metric], _REAL), ("generated", generated[metric], _GENERATED)]
        for position, (_, column, colour) in enumerate(groups, start=1):
            _violin_or_strip(ax, column.to_numpy(np.float64), position, colour)
        ax.set_xticks(
            [1, 2], [f"{name}\n(n={len(column)})" for name, column, _ in groups], fontsize=8
        )
        ax.set_xlim(0.4, 2.6)
        ax.set_title(metric, fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
        if metric in thresholds.medians:
            side = "lower" if metric in FAIL_BELOW else "upper"
            ax.axhline(
                thresholds.threshold(metric, t),
                color="black",
                linestyle="--",
                linewidth=1.0,
                label=f"{side} limit, t={t:g}",
            )
            ax.legend(loc="best", fontsize=7, frameon=False)
    title = f"{perturbation}: QC metrics of real vs generated cells"
    if generated_at:
        title += f" ({generated_at})"
    if pass_rates:
        rates = ", ".join(f"{name} {rate:.1%}" for name, rate in pass_rates.items())
        title += f"\nQC pass rate at t={t:g}: {rates}"
    figure.suptitle(title, fontsize=11)
    return _save(figure, path)


def _violin_or_strip(ax, values: np.ndarray, position: float, colour: str) -> None:
    """A violin of `values` at `position`, or a strip of points where a violin is undefined.

    matplotlib's violins are Gaussian KDEs, whose bandwidth is singular for a single value or a
    constant column (e.g. pct_counts_hb = 0 everywhere). Then we fall back to a strip plot: the
    points themselves with a little *horizontal* jitter, so the drawn values stay exact (jitter
    added to the data would invent a spread that is not there). Non-finite values are dropped.
    """
    values = values[np.isfinite(values)]
    if values.size == 0:
        ax.text(
            position,
            0.5,
            "no cells",
            ha="center",
            va="center",
            fontsize=8,
            transform=ax.get_xaxis_transform(),
        )
        return
    if values.size >= 2 and np.ptp(values) > 0:
        parts = ax.violinplot(values, positions=[position], widths=0.8, showmedians=True)
        for body in parts["bodies"]:
            body.set_facecolor(colour)
            body.set_edgecolor("black")
            body.set_alpha(0.6)
        for name in ("cmedians", "cmins", "cmaxes", "cbars"):
            parts[name].set_color("black")
            parts[name].set_linewidth(0.8)
        return
    rng = np.random.default_rng(0)  # fixed: the jitter is cosmetic and must not vary per call
    jitter = rng.uniform(-0.15, 0.15, size=values.size)
    ax.scatter(position + jitter, values, s=6, color=colour, alpha=0.6, linewidths=0)
    ax.hlines(np.median(values), position - 0.3, position + 0.3, color="black", linewidth=0.8)


# ---------------------------------------------------------------------------------------------
# Latent embedding
# ---------------------------------------------------------------------------------------------


def latent_embedding(
    z: np.ndarray,
    qc_fail: np.ndarray,
    labels: np.ndarray,
    path: str | os.PathLike,
    *,
    seed: int,
    max_cells: int = 20000,
    control: str = "non-targeting",
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
    if len(z) > max_cells:
        keep = np.sort(np.random.default_rng(seed).choice(len(z), size=max_cells, replace=False))
        z, qc_fail, labels = z[keep], qc_fail[keep], labels[keep]
    coords, method = _embed(z, seed)

    figure = _new_figure(13.0, 5.6)
    ax_qc, ax_pert = figure.subplots(1, 2)
    point = max(1.0, min(20.0, 4000.0 / len(z)))  # fewer cells, bigger dots
    for fail, name, colour in ((False, "pass", _PASS), (True, "fail", _FAIL)):
        chosen = qc_fail == fail
        ax_qc.scatter(
            *coords[chosen].T,
            s=point,
            color=colour,
            alpha=0.6,
            linewidths=0,
            label=f"{name} ({chosen.sum()})",
            rasterized=True,
        )
    ax_qc.set_title("QC status")
    ax_qc.legend(loc="best", fontsize=8, markerscale=max(1.0, 12.0 / point))

    for name, colour, chosen in _perturbation_groups(labels, control):
        ax_pert.scatter(
            *coords[chosen].T,
            s=point,
            color=colour,
            alpha=0.7,
            linewidths=0,
            label=f"{name} ({chosen.sum()})",
            rasterized=True,
        )
    ax_pert.set_title("perturbation")
    ax_pert.legend(
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        fontsize=7,
        frameon=False,
        markerscale=max(1.0, 12.0 / point),
    )
    for ax in (ax_qc, ax_pert):
        ax.set_xlabel(f"{method} 1")
        ax.set_ylabel(f"{method} 2")
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle(f"basal latent z_b: {len(z)} cells, L = {z.shape[1]}")
    return _save(figure, path)


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
    """(N, 2) scores on the first two principal axes (zero-padded when N or L < 2).

    Each axis's sign is fixed so its largest-magnitude loading is positive: SVD signs are
    otherwise arbitrary and the plot would flip between LAPACK builds.
    """
    centred = z.astype(np.float64) - z.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    vt = vt[:2]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    scores = centred @ (vt * np.where(signs == 0, 1.0, signs)[:, None]).T
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


# ---------------------------------------------------------------------------------------------
# ATE scatter
# ---------------------------------------------------------------------------------------------


def ate_scatter(
    data_ate: np.ndarray,
    model_ate: np.ndarray,
    labels: np.ndarray,
    path: str | os.PathLike,
    *,
    highlight: Sequence[str] | None = None,
) -> Path:
    """Model vs data average treatment effect, one point per (perturbation, gene).

    The picture behind the headline ATE-ρ (docs/metrics.md#ate-metrics): points on the y = x line
    are effects the model reproduces; the title carries Pearson r over all points.

    Args:
      data_ate: (P, G) data ATE on the evaluation scale, rows aligned with `labels`.
      model_ate: (P, G) model ATE, same alignment.
      labels: (P,) perturbation names.
      path: where the PNG goes; its directory must exist.
      highlight: a few perturbation names drawn in colour on top; an unknown name is an error.
    """
    data_ate = np.asarray(data_ate, dtype=np.float64)
    model_ate = np.asarray(model_ate, dtype=np.float64)
    labels = np.asarray(labels).astype(str)
    if (
        data_ate.ndim != 2
        or data_ate.shape != model_ate.shape
        or labels.shape != data_ate.shape[:1]
    ):
        raise ValueError(
            f"need data_ate and model_ate (P, G) and labels (P,); got {data_ate.shape}, "
            f"{model_ate.shape}, {labels.shape}"
        )
    highlight = list(highlight or [])
    unknown = [name for name in highlight if name not in set(labels)]
    if unknown:
        raise ValueError(f"perturbations to highlight not among the labels: {unknown}")

    x, y = data_ate.ravel(), model_ate.ravel()
    finite = np.isfinite(x) & np.isfinite(y)
    r = _pearson(x[finite], y[finite])

    figure = _new_figure(6.4, 6.0)
    ax = figure.subplots()
    ax.scatter(
        x[finite],
        y[finite],
        s=3,
        color="#555555",
        alpha=0.15,
        linewidths=0,
        rasterized=True,
        label=f"{len(labels)} perturbations × {data_ate.shape[1]} genes",
    )
    palette = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#e377c2")
    for i, name in enumerate(highlight):
        rows = labels == name
        ax.scatter(
            data_ate[rows].ravel(),
            model_ate[rows].ravel(),
            s=10,
            alpha=0.8,
            color=palette[i % len(palette)],
            linewidths=0,
            label=name,
        )
    if finite.any():
        low = min(x[finite].min(), y[finite].min())
        high = max(x[finite].max(), y[finite].max())
        pad = 0.05 * (high - low) if high > low else 1.0
        low, high = low - pad, high + pad
        ax.plot(
            [low, high], [low, high], color="black", linestyle="--", linewidth=1.0, label="y = x"
        )
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel("data ATE (log2 normalised expression)")
    ax.set_ylabel("model ATE (log2 normalised expression)")
    ax.set_title(f"model vs data ATE: Pearson r = {r:.3f}")
    ax.legend(loc="upper left", fontsize=8, markerscale=2.0)
    return _save(figure, path)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two (n,) vectors; NaN when either is constant or n < 2."""
    if x.size < 2:
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / denominator) if denominator > 0 else float("nan")
