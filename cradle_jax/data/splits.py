"""Train/validation/test splits of cells (docs/data.md#splits), as one int8 code per cell.

`combinations` holds out whole combinations (unseen pairs in test); `random` is a seeded
64/16/20 cell split; `column` takes the split from an obs column.
"""

import numpy as np
import pandas as pd

from cradle_jax.data.errors import DataError
from cradle_jax.data.seeding import host_rng

TRAIN, VAL, TEST, UNUSED = 0, 1, 2, -1
SPLIT_CODES = {"train": TRAIN, "val": VAL, "test": TEST}
_COLUMN_ALIASES = {"train": TRAIN, "val": VAL, "valid": VAL, "validation": VAL, "test": TEST}


def _holdout(positions: np.ndarray, rng: np.random.Generator, frac_kept: float = 0.8):
    """Shuffle `positions`; the first floor(frac·n) are kept, the rest held out (sklearn sizes)."""
    shuffled = rng.permutation(positions)
    n_kept = int(np.floor(frac_kept * len(shuffled)))
    return shuffled[:n_kept], shuffled[n_kept:]


def random_split(n_cells: int, seed: int) -> np.ndarray:
    """64/16/20 % train/val/test: 80/20 (train+val)/test, then 80/20 train/val."""
    rng = host_rng(seed, "split")
    codes = np.full(n_cells, TEST, dtype=np.int8)
    trainval, _ = _holdout(np.arange(n_cells), rng)
    train, val = _holdout(trainval, rng)
    codes[train], codes[val] = TRAIN, VAL
    return codes


def combinations_split(
    labels: np.ndarray, n_members: np.ndarray, seed: int, frac_train: float
) -> np.ndarray:
    """Hold out a seeded share of combinations: none of their cells is in train or val.

    Follows the original: combinations are shuffled, the first floor(frac_train·n) are training
    combinations; combination cells are split 80/20 (train+val)/test and 80/20 train/val *before*
    filtering by combination, so cell sets are nested across `frac_train`; a cell whose partition
    disagrees with its combination's role is UNUSED. Singles and controls split 80/20 train/val.
    """
    if not 0.0 < frac_train < 1.0:
        raise DataError(f"data.frac_combinations_train must be in (0, 1), got {frac_train}")
    rng = host_rng(seed, "split")
    is_combo = n_members >= 2
    combos = np.unique(labels[is_combo]).astype(str)
    if len(combos) < 2:
        raise DataError(
            f"split 'combinations' needs at least 2 distinct combinations, found {len(combos)}"
        )
    combos = rng.permutation(combos)
    n_train_combos = int(np.floor(frac_train * len(combos)))
    train_combos = set(combos[:n_train_combos])

    codes = np.full(len(labels), UNUSED, dtype=np.int8)
    combo_cells = np.flatnonzero(is_combo)
    trainval, test = _holdout(combo_cells, rng)
    train, val = _holdout(trainval, rng)
    in_train_combo = np.array([str(label) in train_combos for label in labels])
    codes[train[in_train_combo[train]]] = TRAIN
    codes[val[in_train_combo[val]]] = VAL
    codes[test[~in_train_combo[test]]] = TEST

    train, val = _holdout(np.flatnonzero(~is_combo), rng)
    codes[train], codes[val] = TRAIN, VAL
    return codes


def column_split(obs: pd.DataFrame, column: str) -> np.ndarray:
    """Split codes from an obs column of train/val/test (missing values: unused)."""
    if column not in obs.columns:
        raise DataError(f"split column {column!r} not in obs (data.split_column)")
    values = obs[column]
    codes = np.full(len(values), UNUSED, dtype=np.int8)
    present = values.notna().to_numpy()
    names = values[present].astype(str).str.lower().to_numpy()
    unknown = sorted(set(names) - set(_COLUMN_ALIASES))
    if unknown:
        raise DataError(
            f"split column {column!r} has values {unknown[:5]}; expected train/val/test"
        )
    codes[present] = [_COLUMN_ALIASES[name] for name in names]
    return codes
