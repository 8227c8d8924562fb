"""Figures for the evaluation's plots: each on its own Agg canvas, written as a PNG atomically.

Figures are `matplotlib.figure.Figure` objects on an Agg canvas, never pyplot figures: nothing
is registered in pyplot's global figure list, so repeated calls neither leak memory nor draw into
each other, and no display is needed. A PNG is written to a temporary file beside the target,
then renamed, so a report never links to a half-written image.
"""

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cradle_jax import atomic

DPI = 120


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas, unknown to pyplot (so nothing global to close)."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: str | os.PathLike) -> Path:
    """Write `figure` as a PNG at `path` atomically; on any failure leave no file behind.

    The parent directory must exist: a missing one is a caller's mistake worth an error, not
    something to paper over by creating directories in unexpected places.
    """
    path = Path(path)
    with atomic.replacing(path) as tmp:
        # No "Software" text chunk: the bytes then depend only on the drawing.
        figure.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return path
