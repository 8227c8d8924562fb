"""Device-resident data: the step's gathered batches are the host's, value for value, and
training on either input pipeline ends with the same parameters."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from cradle_jax.config import data_config
from cradle_jax.data.batches import batch_indices, build_batch
from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.train import resident
from cradle_jax.train.errors import RunError
from cradle_jax.train.inputs import batch_arrays
from cradle_jax.train.loop import train_and_evaluate
from cradle_jax.train.mesh import data_mesh
from tests.conftest import labels_with_pairs, make_adata
from tests.train.conftest import saved_params, tiny_config

LAYOUTS = ("dense", "sparse")


@pytest.fixture(scope="module")
def data():
    adata = make_adata(labels_with_pairs(20), n_genes=10)
    return load_perturb_data(adata, data_config(), seed=0)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gathered_batches_equal_the_host_batches_padding_included(data, layout):
    cells = resident.resident_cells(data, data_mesh(), layout)
    gather = jax.jit(resident.gather_batch)
    indices = list(batch_indices(data, "train", 32, seed=0, epoch=1))
    assert (indices[-1] == -1).any(), "the last batch should hold padding"
    for index in indices:
        host = batch_arrays(build_batch(data, index[index >= 0], pad_to=len(index)))
        device = gather(cells, jnp.asarray(index, jnp.int32))
        assert device.keys() == host.keys()
        for name, value in host.items():
            np.testing.assert_array_equal(np.asarray(device[name]), value, err_msg=name)


def test_sparse_rows_sum_duplicates_and_handle_empty_rows_and_matrices():
    matrix = sp.csr_matrix(
        (np.array([1.0, 2.0, 5.0, 3.0], np.float32), np.array([2, 2, 0, 1]), [0, 2, 2, 4]),
        shape=(3, 4),
    )  # row 0 holds column 2 twice, row 1 is empty
    index, present = jnp.array([2, 1, 0, 0]), jnp.array([True, True, True, False])
    rows = resident._sparse_rows(matrix, data_mesh())
    expected = matrix.toarray()[[2, 1, 0, 0]] * np.array([1, 1, 1, 0])[:, None]
    np.testing.assert_array_equal(np.asarray(rows.dense(index, present)), expected)
    empty = resident._sparse_rows(sp.csr_matrix((3, 4), dtype=np.float32), data_mesh())
    assert empty.longest_row == 0
    np.testing.assert_array_equal(np.asarray(empty.dense(index, present)), np.zeros((4, 4)))


def test_resident_bytes_count_each_layout(data):
    n = data.n_cells
    matrices = [data.counts.matrix, data.counterfactual.table(), data.dosage]
    extra = data.qc.nbytes + 4 * n
    dense = sum(4 * m.shape[0] * m.shape[1] for m in matrices) + extra
    sparse = sum(8 * m.nnz + 4 * n for m in matrices) + extra
    assert resident.resident_bytes(data, "dense") == dense
    assert resident.resident_bytes(data, "sparse") == sparse


def dense_too_large(monkeypatch) -> None:
    """The dense layout made to need more memory than any device has; the sparse one as is."""
    sizes = resident.resident_bytes
    monkeypatch.setattr(
        resident,
        "resident_bytes",
        lambda data, layout: sizes(data, layout) * 10**9 ** (layout == "dense"),
    )


def test_auto_takes_dense_then_sparse_then_the_host_and_device_refuses_with_the_reason(
    data, monkeypatch
):
    mesh = data_mesh()
    assert resident.choose_pipeline(data, mesh, "auto", 0.5) == "dense"
    assert resident.choose_pipeline(data, mesh, "host", 0.5) == "host"
    dense_too_large(monkeypatch)
    assert resident.choose_pipeline(data, mesh, "auto", 0.5) == "sparse"
    assert resident.choose_pipeline(data, mesh, "device", 0.5) == "sparse"
    monkeypatch.setattr(resident, "device_memory", lambda device: 1000)
    assert resident.choose_pipeline(data, mesh, "auto", 0.5) == "host"
    with pytest.raises(RunError, match=r"device_memory_share=0.5 .*input_pipeline=host"):
        resident.choose_pipeline(data, mesh, "device", 0.5)
    with pytest.raises(RunError, match="input_pipeline must be one of"):
        resident.choose_pipeline(data, mesh, "gpu", 0.5)


def test_a_backed_file_is_streamed_from_the_host(sim_path):
    config = data_config()
    config.backed = True
    data = load_perturb_data(sim_path, config, seed=0)
    assert resident.choose_pipeline(data, data_mesh(), "auto", 1.0) == "host"
    with pytest.raises(RunError, match=r"data\.backed=True keeps the counts on disk"):
        resident.choose_pipeline(data, data_mesh(), "device", 1.0)


def max_difference(a: dict, b: dict) -> float:
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@pytest.fixture(scope="module")
def host_run(sim_path, tmp_path_factory) -> Path:
    """An uninterrupted run of `tiny_config` with batches built on the host."""
    workdir = tmp_path_factory.mktemp("host")
    train_and_evaluate(tiny_config(sim_path, **{"train.input_pipeline": "host"}), workdir)
    return workdir


def test_batches_from_the_host_train_the_parameters_of_the_device_resident_reference_run(
    host_run, reference_run
):
    # reference_run took the default: every cell on the device, dense. The same batches enter
    # the same step; only XLA's fusion of the gather into it may differ.
    assert max_difference(saved_params(host_run), saved_params(reference_run)) < 1e-5


def test_sparse_device_rows_train_the_parameters_of_the_dense_ones(
    sim_path, reference_run, tmp_path, monkeypatch, capsys
):
    dense_too_large(monkeypatch)
    train_and_evaluate(tiny_config(sim_path), tmp_path)
    assert "input pipeline: every cell on the device (sparse" in capsys.readouterr().out
    assert max_difference(saved_params(tmp_path), saved_params(reference_run)) < 1e-5


def test_a_host_fed_run_stopped_mid_epoch_resumes_to_the_uninterrupted_parameters(
    sim_path, host_run, tmp_path
):
    config = tiny_config(sim_path, **{"train.input_pipeline": "host", "train.max_steps": 13})
    assert train_and_evaluate(config, tmp_path)["steps"] == 13
    train_and_evaluate(tiny_config(sim_path, **{"train.input_pipeline": "host"}), tmp_path)
    assert max_difference(saved_params(tmp_path), saved_params(host_run)) == 0.0
