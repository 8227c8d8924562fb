import numpy as np
import pytest

from cradle_jax.data.batches import epoch_order, iterate_batches
from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.data.references import NO_REFERENCE
from tests.conftest import labels_with_pairs, make_adata


@pytest.fixture(scope="module")
def data():
    from cradle_jax.config import data_config

    return load_perturb_data(make_adata(labels_with_pairs(20), n_genes=10), data_config(), seed=0)


def test_every_cell_once_and_padding_has_weight_zero(data):
    batches = list(iterate_batches(data, "train", 32, seed=0, epoch=0, pad_multiple=8))
    n_train = len(data.cells("train"))
    seen = np.concatenate([b.index[b.weight > 0] for b in batches])
    assert sorted(seen.tolist()) == data.cells("train").tolist()
    last = batches[-1]
    n_real = n_train - 32 * (len(batches) - 1)
    assert last.X.shape[0] == -(-n_real // 8) * 8  # padded to a multiple of 8 only
    pad = last.weight == 0
    assert pad.sum() == last.X.shape[0] - n_real
    assert (last.index[pad] == -1).all()
    for field in (last.X, last.D, last.qc, last.reference_X, last.library_size):
        assert (field[pad] == 0).all()
    assert all(b.X.shape[0] == 32 for b in batches[:-1])


def test_default_padding_gives_one_static_shape(data):
    shapes = {b.X.shape for b in iterate_batches(data, "train", 48, seed=0)}
    assert shapes == {(48, 10)}


def test_batch_contents_match_the_dataset(data):
    batch = next(iterate_batches(data, "train", 16, seed=3))
    idx = batch.index
    dense = data.counts.matrix.toarray()
    np.testing.assert_array_equal(batch.X, dense[idx])
    np.testing.assert_array_equal(batch.D, data.dosage[idx].toarray())
    np.testing.assert_array_equal(batch.qc, data.qc[idx])
    np.testing.assert_array_equal(batch.library_size, dense[idx].sum(1))
    for row, i in enumerate(idx):
        drawn = data.references.draws(np.array([i]))[0]
        refs = drawn[drawn != NO_REFERENCE]
        if len(refs) == 0:
            assert (batch.reference_X[row] == 0).all()
        else:
            lower = np.sort(dense[refs], axis=0)[(len(refs) - 1) // 2]
            np.testing.assert_array_equal(batch.reference_X[row], lower)
    assert batch.X.dtype == batch.reference_X.dtype == batch.D.dtype == np.float32


def test_order_is_a_function_of_seed_and_epoch(data):
    cells = data.cells("train")
    np.testing.assert_array_equal(epoch_order(cells, 1, 4), epoch_order(cells, 1, 4))
    assert not np.array_equal(epoch_order(cells, 1, 4), epoch_order(cells, 1, 5))
    assert not np.array_equal(epoch_order(cells, 1, 4), epoch_order(cells, 2, 4))


def test_resume_mid_epoch_gives_the_remaining_batches(data):
    full = list(iterate_batches(data, "train", 16, seed=0, epoch=2))
    resumed = list(iterate_batches(data, "train", 16, seed=0, epoch=2, start_batch=3))
    assert len(resumed) == len(full) - 3
    for a, b in zip(full[3:], resumed, strict=True):
        assert a.X.tobytes() == b.X.tobytes()
        assert a.index.tobytes() == b.index.tobytes()


def test_unshuffled_validation_is_in_row_order(data):
    batch = next(iterate_batches(data, "val", 1000, seed=0, shuffle=False))
    real = batch.index[batch.weight > 0]
    np.testing.assert_array_equal(real, data.cells("val"))


def test_batch_size_must_divide_by_pad_multiple(data):
    with pytest.raises(ValueError, match="not a multiple"):
        next(iterate_batches(data, "train", 30, seed=0, pad_multiple=8))
