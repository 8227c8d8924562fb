"""How well learned perturbation masks recover planted ones (simulated data,
docs/metrics.md#mask-recovery).

Latent dimensions are identified at best up to permutation, so every score first matches the
learned columns to the planted ones (Hungarian assignment) and then compares entry by entry:

* F1 of the binarised mask σ(φ) > threshold, columns matched to maximise the true positives;
* AUROC of the probabilities σ(φ) for the planted entries, columns matched to maximise the
  probability mass on planted entries.

Chance is a permutation null: the learned rows are reassigned to the singles at random and
scored the same way. That keeps everything about the learned mask but which single it belongs
to (its density, how many dims each row touches, how sure the probabilities are), so a model
cannot beat the null by getting the sparsity level right without getting the pattern right.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import roc_auc_score


def planted_rows(truth: dict[str, np.ndarray], singles: Sequence[str]) -> np.ndarray:
    """The simulator's planted mask (T, L) with its rows in the order of `singles`.

    `singles` is the model's perturbation vocabulary, whose order the rows of the learned mask
    logits follow; it need not be the simulator's order.
    """
    index = {name: t for t, name in enumerate(truth["singles"].tolist())}
    return truth["mask"][[index[name] for name in singles]]


def matched_f1(predicted: np.ndarray, planted: np.ndarray) -> float:
    """F1 of a binary (T, L') mask against a binary (T, L) one after the best column matching.

    Unmatched columns (L' ≠ L) count as false positives or negatives; 0 if both masks are empty.
    """
    predicted, planted = predicted.astype(np.int64), planted.astype(np.int64)
    overlap = planted.T @ predicted  # (L, L') true positives of each column pairing
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    total = planted.sum() + predicted.sum()
    return float(2 * overlap[rows, cols].sum() / total) if total else 0.0


def matched_auroc(probs: np.ndarray, planted: np.ndarray) -> float:
    """AUROC of (T, L') probabilities for the planted entries of a binary (T, L) mask.

    Columns are matched to maximise the probability on planted entries; with L' ≠ L only the
    matched columns are scored. Needs at least one planted and one unplanted matched entry.
    """
    planted = planted.astype(bool)
    rows, cols = linear_sum_assignment(planted.T.astype(np.float64) @ probs, maximize=True)
    return float(roc_auc_score(planted[:, rows].ravel(), probs[:, cols].ravel()))


@dataclass(frozen=True)
class MaskRecovery:
    """Matched F1 and AUROC of one learned mask and their permutation-null draws."""

    f1: float
    auroc: float
    null_f1: np.ndarray  # (n_null,)
    null_auroc: np.ndarray  # (n_null,)

    @property
    def f1_null_95(self) -> float:
        return float(np.percentile(self.null_f1, 95))

    @property
    def auroc_null_95(self) -> float:
        return float(np.percentile(self.null_auroc, 95))

    @property
    def beats_chance(self) -> bool:
        """Both scores strictly above their null's 95th percentile."""
        return self.f1 > self.f1_null_95 and self.auroc > self.auroc_null_95


def mask_recovery(
    probs: np.ndarray,
    planted: np.ndarray,
    n_null: int = 200,
    seed: int = 0,
    threshold: float = 0.5,
) -> MaskRecovery:
    """Score learned mask probabilities (T, L') against a planted mask (T, L), rows aligned.

    The null scores `n_null` copies of `probs` with their rows permuted uniformly at random
    (numpy Generator seeded with `seed`); the binary F1 mask is probs > threshold throughout.
    """
    rng = np.random.default_rng(seed)
    null_f1, null_auroc = np.empty(n_null), np.empty(n_null)
    for k in range(n_null):
        shuffled = probs[rng.permutation(probs.shape[0])]
        null_f1[k] = matched_f1(shuffled > threshold, planted)
        null_auroc[k] = matched_auroc(shuffled, planted)
    return MaskRecovery(
        f1=matched_f1(probs > threshold, planted),
        auroc=matched_auroc(probs, planted),
        null_f1=null_f1,
        null_auroc=null_auroc,
    )
