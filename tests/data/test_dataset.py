import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cradle_jax.data.batches import iterate_batches
from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.data.errors import DataError
from cradle_jax.data.qc import QC_METRICS
from cradle_jax.data.splits import TEST, TRAIN
from tests.conftest import labels_with_pairs, make_adata


def _load(adata, config, seed=0):
    return load_perturb_data(adata, config, seed)


def test_summary_and_shapes(config):
    data = _load(make_adata(labels_with_pairs(20)), config)
    n = len(labels_with_pairs(20))
    assert data.dosage.shape == (n, 4)
    assert data.qc.shape == (n, 1)
    assert data.references.draws(np.arange(n)).shape == (n, 50)
    summary = data.summary()
    assert summary["cells"] == n
    assert summary["perturbations"] == 4
    assert summary["treatments"] == 11
    assert summary["qc_metrics_source"] == "obs"
    assert 0 < summary["qc_fail_fraction"] < 1
    # obs-count vectors of each split agree with a direct count
    for name in ("train", "val", "test"):
        cells = data.cells(name)
        np.testing.assert_array_equal(
            data.obs_counts[name].dosage, (data.dosage[cells].toarray() != 0).sum(0)
        )
        np.testing.assert_array_equal(data.obs_counts[name].qc, data.qc[cells].sum(0))


def test_qc_mode_each_has_one_column_per_available_criterion(config):
    config.qc_mode = "each"
    data = _load(make_adata(labels_with_pairs(20)), config)
    assert data.qc_columns[0] == "qc_UMI_count"
    # The doublet call is a criterion only where Scrublet fitted one and called some cell.
    available = [m for m in QC_METRICS if m not in data.qc_metrics.unavailable]
    if not data.qc_thresholds.doublets:
        available = [m for m in available if m != "predicted_doublet"]
    assert len(available) >= 5
    assert data.qc.shape[1] == len(data.qc_columns) == len(available)
    assert list(data.qc_columns) == [f"qc_{m}" for m in available]


def test_combination_split_through_the_dataset(config):
    config.split = "combinations"
    data = _load(make_adata(labels_with_pairs(30)), config)
    test_labels = set(data.labels[data.split == TEST])
    train_labels = set(data.labels[data.split == TRAIN])
    assert test_labels
    assert test_labels.isdisjoint(train_labels)


def test_same_seed_same_bytes_other_seed_differs(config):
    adata = make_adata(labels_with_pairs(20))
    a, b, c = _load(adata, config, 1), _load(adata, config, 1), _load(adata, config, 2)
    assert a.split.tobytes() == b.split.tobytes()
    every = np.arange(a.n_cells)
    assert a.references.draws(every).tobytes() == b.references.draws(every).tobytes()
    batch_a = next(iterate_batches(a, "train", 16, seed=1))
    batch_b = next(iterate_batches(b, "train", 16, seed=1))
    assert batch_a.X.tobytes() == batch_b.X.tobytes()
    assert batch_a.reference_X.tobytes() == batch_b.reference_X.tobytes()
    assert a.split.tobytes() != c.split.tobytes()
    assert a.references.draws(every).tobytes() != c.references.draws(every).tobytes()


def test_backed_file_gives_the_same_batches_as_in_memory(config, tmp_path):
    adata = make_adata(labels_with_pairs(20))
    path = tmp_path / "d.h5ad"
    adata.write_h5ad(path)
    in_memory = _load(ad.read_h5ad(path), config)
    config.backed = True
    backed = load_perturb_data(path, config, 0)
    every = np.arange(in_memory.n_cells)
    assert backed.references.draws(every).tobytes() == in_memory.references.draws(every).tobytes()
    np.testing.assert_array_equal(backed.normalization.mean, in_memory.normalization.mean)
    for x, y in zip(
        iterate_batches(in_memory, "train", 32, seed=0),
        iterate_batches(backed, "train", 32, seed=0),
        strict=True,
    ):
        assert x.X.tobytes() == y.X.tobytes()
        assert x.reference_X.tobytes() == y.reference_X.tobytes()
    backed.counts.close()


def test_counts_from_a_layer(config):
    adata = make_adata(labels_with_pairs(20))
    adata.layers["counts"] = adata.X.copy()
    adata.X = np.log1p(adata.X.toarray())
    with pytest.raises(DataError, match="non-integer counts"):
        _load(adata, config)
    config.layer = "counts"
    assert _load(adata, config).n_cells == adata.n_obs
    config.layer = "raw"
    with pytest.raises(DataError, match="layer 'raw' not found"):
        _load(adata, config)


def _with_x(adata, x):
    adata.X = sp.csr_matrix(x)
    return adata


def _with_obs(adata, obs):
    adata.obs = obs
    return adata


def _with_labels(adata, labels):
    return _with_obs(adata, adata.obs.assign(perturbation=labels))


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda a: _with_x(a, -a.X.toarray()), "negative counts"),
        (lambda a: _with_x(a, a.X.toarray() + 0.5), "non-integer counts"),
        (lambda a: _with_x(a, np.where(a.X.toarray() > 4, np.nan, a.X.toarray())), "NaN"),
        (lambda a: _with_x(a, np.where(a.X.toarray() > 4, np.inf, a.X.toarray())), "infinite"),
        (lambda a: a[:, :0].copy(), "empty"),
        (lambda a: _with_obs(a, a.obs.drop(columns="perturbation")), "perturbation column"),
        (lambda a: _with_labels(a, "A"), "control label"),
        (lambda a: _with_labels(a, a.obs["perturbation"].replace("A", None)), "missing values"),
    ],
    ids=["negative", "fractional", "nan", "inf", "empty", "no-column", "no-control", "nan-label"],
)
def test_bad_input_gets_a_named_error(config, corrupt, message):
    adata = corrupt(make_adata(labels_with_pairs(20)))
    with pytest.raises(DataError, match=message):
        _load(adata, config)


def test_duplicate_names(config):
    adata = make_adata(labels_with_pairs(20))
    adata.obs_names = ["same"] * adata.n_obs
    with pytest.raises(DataError, match="duplicate cell names"):
        _load(adata, config)
    adata = make_adata(labels_with_pairs(20))
    adata.var_names = ["G"] * adata.n_vars
    with pytest.raises(DataError, match=r"duplicate gene names.*var_names_make_unique"):
        _load(adata, config)


def test_perturbation_without_training_cells(config):
    labels = labels_with_pairs(20)
    adata = make_adata([*labels, "E"])  # one cell: it lands in one split at most
    config.split = "column"
    adata.obs["split"] = ["train"] * (len(labels) - 40) + ["val"] * 40 + ["test"]
    with pytest.raises(DataError, match="perturbation 'E' has no cells in the training split"):
        _load(adata, config)


def test_empty_validation_split(config):
    adata = make_adata(labels_with_pairs(5))
    config.split = "column"
    adata.obs["split"] = "train"
    with pytest.raises(DataError, match="the val split has no cells"):
        _load(adata, config)


def test_file_errors(config, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_perturb_data(tmp_path / "missing.h5ad", config, 0)
    text = tmp_path / "notes.h5ad"
    text.write_text("not hdf5")
    with pytest.raises(DataError, match="not an HDF5"):
        load_perturb_data(text, config, 0)
    good = tmp_path / "good.h5ad"
    make_adata(labels_with_pairs(5)).write_h5ad(good)
    truncated = tmp_path / "truncated.h5ad"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(DataError, match=r"truncated\.h5ad"):
        load_perturb_data(truncated, config, 0)


def test_missing_gene_patterns_fall_back_explicitly(config, caplog):
    """No MT-/RP/HB genes: those metrics are unavailable, said out loud, and not used as flags."""
    adata = make_adata(labels_with_pairs(20), qc_in_obs=False)
    config.qc_doublets = False
    with caplog.at_level(logging.WARNING):
        data = _load(adata, config)
    unavailable = data.qc_metrics.unavailable
    assert {"pct_counts_mt", "pct_counts_ribo", "pct_counts_hb", "predicted_doublet"} <= set(
        unavailable
    )
    assert "pct_counts_mt" in caplog.text
    config.qc_mode = "each"
    assert _load(adata, config).qc_columns == ("qc_UMI_count", "qc_ngenes")


def test_computed_qc_metrics_match_numpy(config):
    adata = make_adata(labels_with_pairs(20), qc_in_obs=False)
    adata.var_names = ["MT-CO1", "RPL3", "HBB"] + [f"G{j}" for j in range(adata.n_vars - 3)]
    config.qc_doublets = False
    table = _load(adata, config).qc_metrics.table
    x = adata.X.toarray()
    np.testing.assert_allclose(table["UMI_count"], x.sum(1))
    np.testing.assert_allclose(table["ngenes"], (x > 0).sum(1))
    np.testing.assert_allclose(table["pct_counts_mt"], 100 * x[:, 0] / x.sum(1), rtol=1e-6)
    assert isinstance(table, pd.DataFrame)
