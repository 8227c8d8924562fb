"""Names of generated cells: unique within a file, readable as the label and a position."""

import numpy as np
import pandas as pd


def generated_cell_names(labels: np.ndarray) -> list[str]:
    """'<label>_<p>' with p the within-perturbation position: unique, as p has no '_'."""
    labels = np.asarray(labels)
    position = pd.Series(labels).groupby(labels, sort=False).cumcount().to_numpy()
    return [f"{label}_{p}" for label, p in zip(labels.tolist(), position.tolist(), strict=True)]
