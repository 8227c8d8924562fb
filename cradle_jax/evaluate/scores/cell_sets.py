"""How well a set of predicted cells matches the real cells of the same perturbation.

Two questions, on the evaluation scale x̃ = log2(1 + 10⁴·x/Σx): is the effect right (the mean of
the predicted cells minus the mean of the predicted controls, against the same difference of the
real cells: the ATE metrics of docs/metrics.md#ate-metrics on a one-row table), and is the
expression itself right (the root mean square error between the predicted and the real mean
profile, which also sees a shift that the predicted controls share)? Counterfactuals of real
cells and prior samples are scored the same way, so the two sources can be compared.
"""

import numpy as np
import scipy.sparse as sp

from cradle_jax.evaluate.scores.ate import SCALE
from cradle_jax.evaluate.scores.metrics import ate_metrics


def mean_profile(counts: np.ndarray | sp.spmatrix) -> np.ndarray:
    """(G,) float64 mean of x̃ over the cells (rows) of `counts`; ValueError if there are none."""
    counts = sp.csr_matrix(counts, dtype=np.float64)
    if counts.shape[0] == 0:
        raise ValueError("no cells to average")
    totals = np.asarray(counts.sum(axis=1)).ravel()
    scaled = sp.diags(np.divide(SCALE, totals, out=np.zeros_like(totals), where=totals > 0))
    scaled = scaled @ counts
    scaled.data = np.log2(1.0 + scaled.data)
    return np.asarray(scaled.mean(axis=0)).ravel()


def compare_to_real(predicted, predicted_control, real, real_control) -> dict[str, float]:
    """The ATE metrics of (predicted − predicted control) against (real − real control) and
    `mean_rmse`, the RMSE of the predicted against the real mean profile; each argument is a
    (cells, G) count matrix."""
    predicted_mean, real_mean = mean_profile(predicted), mean_profile(real)
    predicted_effect = predicted_mean - mean_profile(predicted_control)
    real_effect = real_mean - mean_profile(real_control)
    scores = ate_metrics(real_effect[None], predicted_effect[None])
    scores["mean_rmse"] = float(np.sqrt(np.mean((predicted_mean - real_mean) ** 2)))
    return scores
