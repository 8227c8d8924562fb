"""Two non-learned baselines, scored beside every model: control mean and additive.

Both are fitted on the training split's QC-pass cells only, on the evaluation scale
x̃ = log2(1 + 10⁴·x/Σx) (a log-normalised scale; additivity does not depend on the log's base):

* control mean: every perturbation is predicted to look like control, so its predicted ATE is 0
  everywhere. Correlation-type metrics of a constant prediction are undefined (reported as null);
  R² is defined and is the bar any model must clear (R² ≤ 0 means "no better than no effect").
* additive: a label's effect is the sum of its singles' effects, each single's effect being the
  mean of its training cells minus the mean of the training controls. For a single seen in
  training this is its empirical effect (a lookup, hard to beat); for an unseen combination it
  is the additive guess the field has found hard to beat. A label with a single that has no
  QC-pass training cell gets NaN (its effect is unknown), and so do its metrics.
"""

import numpy as np

from cradle_jax.data.dataset import PerturbData
from cradle_jax.data.splits import SPLIT_CODES
from cradle_jax.evaluate.scores.ate import label_means

BASELINES = ("control_mean", "additive")


def baseline_ates(data: PerturbData, labels: list[str]) -> dict[str, np.ndarray]:
    """name → (len(labels), G) float32 predicted ATE of each label against control."""
    vocabulary = data.vocabulary
    training_pass = (data.split == SPLIT_CODES["train"]) & (data.qc.max(axis=1) == 0)
    means, _ = label_means(data, [vocabulary.control_label, *vocabulary.singles], training_pass)
    single_effects = means[1:] - means[0]  # (T, G)
    dosage = vocabulary.dosage(labels).toarray().astype(np.float64)  # (K, T)
    additive = np.zeros((len(labels), len(data.gene_names)))
    for k, t in zip(*np.nonzero(dosage), strict=True):
        additive[k] += dosage[k, t] * single_effects[t]
    return {
        "control_mean": np.zeros((len(labels), len(data.gene_names)), np.float32),
        "additive": additive.astype(np.float32),
    }
