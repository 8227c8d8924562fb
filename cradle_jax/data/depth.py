"""The training data's depth, recorded with a model: the library sizes that generated cells draw
theirs from by default (docs/data.md#training-depth).

A model learns gene shares; a generated cell's depth is the library size ℓ it is drawn at. At a
fixed ℓ = 10⁴ (the original's), cells from a screen whose median library is a few hundred counts
differ from its real cells mostly by depth, and every comparison with them measures that. So the
bundle keeps a seeded sample of the library sizes of the training data's QC-pass control cells
(of all its QC-pass cells when there are too few controls), and `generate` draws each cell's ℓ
from it.
"""

from dataclasses import dataclass
from typing import Self

import numpy as np

from cradle_jax.data.dataset import PerturbData
from cradle_jax.data.seeding import host_rng

# Library sizes kept at most: a depth distribution is pinned down by a few thousand draws, and
# model.json stays small.
DEPTH_CELLS = 2_000
# Fewer QC-pass control cells than this make a ragged distribution: all QC-pass cells then.
MIN_CONTROLS = 50
CONTROLS = "QC-pass control cells"
ALL_PASSING = "QC-pass cells (too few QC-pass control cells)"
ALL_CELLS = "cells with counts (no QC-pass cell)"


@dataclass(frozen=True)
class TrainingDepth:
    """Library sizes (n,) float32 of training cells, `n` ≤ DEPTH_CELLS, drawn by the seed from
    the `cells` cells that `drawn_from` names (CONTROLS, ALL_PASSING or ALL_CELLS)."""

    library_sizes: np.ndarray
    drawn_from: str
    cells: int

    def record(self) -> dict:
        """How a generated AnnData's uns says where its depth came from."""
        return {
            "drawn_from": f"the training data's {self.drawn_from}, recorded with the model",
            "cells": self.cells,
            "sampled": int(self.library_sizes.size),
            "median": float(np.median(self.library_sizes)),
        }

    def to_dict(self) -> dict:
        """JSON-serialisable, for model.json and exports (the median for readers only)."""
        return {
            "library_sizes": [float(size) for size in self.library_sizes],
            "drawn_from": self.drawn_from,
            "cells": self.cells,
            "median": float(np.median(self.library_sizes)),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Self:
        """Inverse of to_dict (the median is recomputed, not read)."""
        return cls(
            np.asarray(d["library_sizes"], np.float32), str(d["drawn_from"]), int(d["cells"])
        )


def training_depth(data: PerturbData, seed: int) -> TrainingDepth:
    """The depth of `data`'s cells, every split: the library sizes of the QC-pass control cells
    with counts, of all QC-pass cells when fewer than MIN_CONTROLS, of every cell with counts
    when none passes QC; at most DEPTH_CELLS of them, drawn by `seed`."""
    counted = data.library_size > 0
    passing = counted & (data.qc.max(axis=1) == 0)
    controls = passing & (data.labels == data.vocabulary.control_label)
    if controls.sum() >= MIN_CONTROLS:
        cells, drawn_from = controls, CONTROLS
    elif passing.any():
        cells, drawn_from = passing, ALL_PASSING
    else:
        cells, drawn_from = counted, ALL_CELLS
    rows = np.flatnonzero(cells)
    if rows.size > DEPTH_CELLS:
        rows = np.sort(host_rng(seed, "training-depth").choice(rows, DEPTH_CELLS, replace=False))
    return TrainingDepth(data.library_size[rows].astype(np.float32), drawn_from, int(cells.sum()))
