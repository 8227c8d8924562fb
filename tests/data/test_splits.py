import numpy as np
import pandas as pd
import pytest

from cradle_jax.data import splits
from cradle_jax.data.errors import DataError
from tests.conftest import labels_with_pairs


def test_random_split_sizes_match_sklearn_style_64_16_20():
    n = 1000
    codes = splits.random_split(n, seed=3)
    # 80/20 then 80/20 with floor on the kept part, as sklearn's train_size does.
    n_trainval = int(np.floor(0.8 * n))
    n_train = int(np.floor(0.8 * n_trainval))
    assert (codes == splits.TRAIN).sum() == n_train == 640
    assert (codes == splits.VAL).sum() == n_trainval - n_train == 160
    assert (codes == splits.TEST).sum() == n - n_trainval == 200


def test_random_split_is_seeded():
    np.testing.assert_array_equal(splits.random_split(500, 1), splits.random_split(500, 1))
    assert not np.array_equal(splits.random_split(500, 1), splits.random_split(500, 2))


def _combination_split(seed, frac=0.75):
    labels = np.array(labels_with_pairs(40), dtype=object)
    n_members = np.array([len(x.split("+")) if x != "non-targeting" else 0 for x in labels])
    return labels, n_members, splits.combinations_split(labels, n_members, seed, frac)


def test_combinations_split_holds_out_whole_pairs():
    labels, n_members, codes = _combination_split(seed=0)
    is_pair = n_members >= 2
    test_pairs = set(labels[codes == splits.TEST])
    trainval_pairs = set(labels[(codes >= 0) & (codes != splits.TEST) & is_pair])
    assert test_pairs, "some pair must be held out"
    assert test_pairs.isdisjoint(trainval_pairs), "a test pair leaked into train/val"
    assert all(n_members[codes == splits.TEST] >= 2), "singles never appear in test"
    # 6 pairs: floor(0.75 * 6) = 4 training pairs, 2 held out.
    assert len(trainval_pairs) == 4
    assert len(test_pairs) == 2
    # Singles and controls: 80/20 train/val, none unused.
    non_pair = codes[~is_pair]
    assert (non_pair >= 0).all()
    assert (non_pair == splits.TRAIN).sum() == int(np.floor(0.8 * (~is_pair).sum()))


def test_combinations_split_is_nested_across_fractions():
    """Split first, filter second (docs/data.md#splits): a cell's partition does not depend on
    frac_train."""
    _, _, small = _combination_split(seed=5, frac=0.5)
    _, _, large = _combination_split(seed=5, frac=0.75)
    for code in (splits.TRAIN, splits.VAL):
        assert set(np.flatnonzero(small == code)) <= set(np.flatnonzero(large == code))


def test_combinations_split_seeded():
    assert np.array_equal(_combination_split(1)[2], _combination_split(1)[2])
    assert not np.array_equal(_combination_split(1)[2], _combination_split(2)[2])


def test_combinations_split_needs_combinations():
    labels = np.array(["A", "B", "non-targeting"] * 10, dtype=object)
    with pytest.raises(DataError, match="at least 2 distinct combinations"):
        splits.combinations_split(labels, np.ones(30, dtype=int), 0, 0.75)


def test_column_split():
    obs = pd.DataFrame({"s": ["train", "Validation", "test", None, "val"]})
    codes = splits.column_split(obs, "s")
    assert codes.tolist() == [0, 1, 2, -1, 1]
    with pytest.raises(DataError, match="expected train/val/test"):
        splits.column_split(pd.DataFrame({"s": ["train", "holdout"]}), "s")
    with pytest.raises(DataError, match="split column 'x' not in obs"):
        splits.column_split(obs, "x")
