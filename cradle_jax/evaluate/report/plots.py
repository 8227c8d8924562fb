"""Diagnostic plots of an evaluation: QC violins and model-vs-data ATE (docs/metrics.md); the
latent embedding is in `embedding`.

Each function draws one figure and writes it as a PNG atomically (`canvas.save_png`) and returns
the path. Output is deterministic for fixed inputs: the strip-plot jitter comes from a fixed
seed.
"""

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cradle_jax.data.qc import FAIL_BELOW, QC_METRICS, QCThresholds
from cradle_jax.evaluate.report.canvas import new_figure, save_png
from cradle_jax.evaluate.scores.metrics import pearson_r

# The doublet call is boolean: a violin of it says nothing, its share is in the pass rates.
VIOLIN_METRICS: tuple[str, ...] = tuple(m for m in QC_METRICS if m != "predicted_doublet")
_REAL, _GENERATED = "#4c72b0", "#dd8452"
_HIGHLIGHTS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#e377c2")


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
    figure = new_figure(2.6 * len(metrics) + 0.6, 4.2)
    axes = np.atleast_1d(figure.subplots(1, len(metrics)))
    for ax, metric in zip(axes, metrics, strict=True):
        _violin_panel(ax, metric, real[metric], generated[metric], thresholds, t)
    title = f"{perturbation}: QC metrics of real vs generated cells"
    if generated_at:
        title += f" ({generated_at})"
    if pass_rates:
        rates = ", ".join(f"{name} {rate:.1%}" for name, rate in pass_rates.items())
        title += f"\nQC pass rate at t={t:g}: {rates}"
    figure.suptitle(title, fontsize=11)
    return save_png(figure, path)


def _violin_panel(
    ax, metric: str, real: pd.Series, generated: pd.Series, thresholds: QCThresholds, t: float
) -> None:
    """One metric's panel: real and generated cells side by side, and the real data's limit
    when it has one."""
    groups = [("real", real, _REAL), ("generated", generated, _GENERATED)]
    for position, (_, column, colour) in enumerate(groups, start=1):
        _violin_or_strip(ax, column.to_numpy(np.float64), position, colour)
    ax.set_xticks([1, 2], [f"{name}\n(n={len(column)})" for name, column, _ in groups], fontsize=8)
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
    data_ate, model_ate, labels = _checked_tables(data_ate, model_ate, labels)
    highlight = list(highlight or [])
    unknown = [name for name in highlight if name not in set(labels)]
    if unknown:
        raise ValueError(f"perturbations to highlight not among the labels: {unknown}")

    x, y = data_ate.ravel(), model_ate.ravel()
    finite = np.isfinite(x) & np.isfinite(y)
    r = pearson_r(x[finite], y[finite])

    figure = new_figure(6.4, 6.0)
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
    _highlights(ax, data_ate, model_ate, labels, highlight)
    if finite.any():
        _identity_line(ax, x[finite], y[finite])
    ax.set_aspect("equal")
    ax.set_xlabel("data ATE (log2 normalised expression)")
    ax.set_ylabel("model ATE (log2 normalised expression)")
    ax.set_title(f"model vs data ATE: Pearson r = {r:.3f}")
    ax.legend(loc="upper left", fontsize=8, markerscale=2.0)
    return save_png(figure, path)


def _checked_tables(
    data_ate: np.ndarray, model_ate: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both tables as float64 (P, G) and the labels as str (P,); ValueError naming the shapes
    unless they agree."""
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
    return data_ate, model_ate, labels


def _highlights(
    ax, data_ate: np.ndarray, model_ate: np.ndarray, labels: np.ndarray, names: list[str]
) -> None:
    """The points of each perturbation in `names`, in its own colour, on top of the others."""
    for i, name in enumerate(names):
        rows = labels == name
        ax.scatter(
            data_ate[rows].ravel(),
            model_ate[rows].ravel(),
            s=10,
            alpha=0.8,
            color=_HIGHLIGHTS[i % len(_HIGHLIGHTS)],
            linewidths=0,
            label=name,
        )


def _identity_line(ax, x: np.ndarray, y: np.ndarray) -> None:
    """The y = x line over the range of the (finite) points, with equal, padded axis limits."""
    low = min(x.min(), y.min())
    high = max(x.max(), y.max())
    pad = 0.05 * (high - low) if high > low else 1.0
    low, high = low - pad, high + pad
    ax.plot([low, high], [low, high], color="black", linestyle="--", linewidth=1.0, label="y = x")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
