"""Backed loading reads obs itself and precomputes reference medians on disk: it must give what
the in-memory loader gives, field by field and batch by batch."""

import gc

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cradle_jax.data import counterfactual_rows
from cradle_jax.data import counts as counts_module
from cradle_jax.data.backed_file import BackedH5ad
from cradle_jax.data.batches import iterate_batches
from cradle_jax.data.counts import BackedCounts
from cradle_jax.data.dataset import load_perturb_data, with_generated_basis
from cradle_jax.data.references import reference_medians
from tests.conftest import labels_with_pairs, make_adata


def _both(adata: ad.AnnData, config, tmp_path, seed=0):
    path = tmp_path / "d.h5ad"
    adata.write_h5ad(path)
    in_memory = load_perturb_data(ad.read_h5ad(path), config, seed)
    config.backed = True
    return in_memory, load_perturb_data(path, config, seed)


def _with_split_and_groups(adata: ad.AnnData) -> ad.AnnData:
    rng = np.random.default_rng(1)
    adata.obs["split"] = rng.choice(["train", "val", "test", None], size=adata.n_obs)
    adata.obs["batch"] = rng.choice(["b1", "b2"], size=adata.n_obs)
    return adata


@pytest.mark.parametrize(
    ("settings", "qc_in_obs"),
    [
        ({}, True),
        ({"references": "opposite_label", "qc_mode": "each"}, True),
        ({"split": "column", "reference_group_key": "batch", "n_reference_samples": 7}, True),
        ({"qc_doublets": False}, False),  # QC metrics computed in row blocks, names from disk
    ],
)
def test_backed_loading_equals_in_memory(config, tmp_path, settings, qc_in_obs):
    config.update(settings)
    adata = _with_split_and_groups(make_adata(labels_with_pairs(25), qc_in_obs=qc_in_obs))
    in_memory, backed = _both(adata, config, tmp_path, seed=3)
    for field in ("labels", "qc", "split", "library_size", "gene_names"):
        np.testing.assert_array_equal(getattr(backed, field), getattr(in_memory, field))
    assert (backed.dosage != in_memory.dosage).nnz == 0
    pd.testing.assert_frame_equal(backed.qc_metrics.table, in_memory.qc_metrics.table)
    assert backed.summary() == in_memory.summary()
    assert backed.summary()["cells_without_reference"] < backed.n_cells
    for split in ("train", "test"):
        for x, y in zip(
            iterate_batches(in_memory, split, 16, seed=0),
            iterate_batches(backed, split, 16, seed=0),
            strict=True,
        ):
            assert x.X.tobytes() == y.X.tobytes()
            assert x.reference_X.tobytes() == y.reference_X.tobytes()
    backed.counts.close()


def test_backed_loading_takes_partial_and_renamed_obs_metrics(config, tmp_path):
    """Some QC metrics in obs (one under another name), the rest computed: read one column at
    a time from disk, the same metrics, sources and thresholds as in memory."""
    adata = make_adata(labels_with_pairs(25))
    obs = adata.obs.drop(columns=["pct_counts_ribo", "pct_counts_hb", "predicted_doublet"])
    adata.obs = obs.rename(columns={"UMI_count": "total_umis"})
    adata.obs["total_umis"] *= 5  # whole-transcriptome counts, beyond the matrix's genes
    config.update(qc_columns="UMI_count=total_umis", qc_doublets=False)
    in_memory, backed = _both(adata, config, tmp_path)
    pd.testing.assert_frame_equal(backed.qc_metrics.table, in_memory.qc_metrics.table)
    assert backed.qc_thresholds == in_memory.qc_thresholds
    assert backed.summary() == in_memory.summary()
    assert backed.summary()["qc_sources"] == {
        "UMI_count": "obs:total_umis",
        "ngenes": "obs:ngenes",
        "pct_counts_mt": "obs:pct_counts_mt",
        "pct_counts_ribo": "unavailable: no gene matches ^RP[SL]",
        "pct_counts_hb": "unavailable: no gene matches ^HB[^(P)]",
        "predicted_doublet": "unavailable: doublet calling switched off",
    }
    np.testing.assert_array_equal(
        backed.qc_metrics.table["UMI_count"], adata.obs["total_umis"].astype(np.float32)
    )
    with_basis = with_generated_basis(backed, config, 0).qc_thresholds
    assert with_basis == with_generated_basis(in_memory, config, 0).qc_thresholds
    basis = with_basis.for_generated_cells()
    assert basis.medians["UMI_count"] == np.median(np.asarray(adata.X.sum(1)).ravel())
    backed.counts.close()


@pytest.mark.parametrize("read_values", [1, 200, 10**9])
def test_medians_on_disk_match_medians_of_the_draws_across_chunks(
    config, tmp_path, monkeypatch, read_values
):
    """Pools bigger than one block of askers are written in several appends, and pools staged
    one by one, a few together or all at once; every cell's row is still the lower median of
    its own draws."""
    monkeypatch.setattr(counterfactual_rows, "MEDIAN_CELLS", 5)
    monkeypatch.setattr(counterfactual_rows, "POOL_READ_VALUES", read_values)
    adata = make_adata(labels_with_pairs(30), fail_fraction=0.5)
    in_memory, backed = _both(adata, config, tmp_path)
    cells = np.arange(backed.n_cells)
    dense = in_memory.counts.matrix.toarray()
    expected = reference_medians(
        in_memory.references.draws(cells), lambda rows: in_memory.counts.rows(rows), 12
    )
    np.testing.assert_array_equal(backed.counterfactual.rows(cells), expected)
    draws = backed.references.draws(cells[:3])
    for row, drawn in zip(backed.counterfactual.rows(cells[:3]), draws, strict=True):
        drawn = drawn[drawn >= 0]
        np.testing.assert_array_equal(row, np.sort(dense[drawn], 0)[(len(drawn) - 1) // 2])
    backed.counts.close()


@pytest.mark.parametrize("read_values", [1, 200, 10**9])
def test_the_median_table_holds_the_medians_taken_on_demand(
    config, tmp_path, monkeypatch, read_values
):
    """In memory, every cell's x^cf computed once, in several chunks, from pools read one by
    one, a few together or all at once, equals the medians of each batch's draws taken when
    asked."""
    monkeypatch.setattr(counterfactual_rows, "MEDIAN_CELLS", 5)
    monkeypatch.setattr(counterfactual_rows, "POOL_READ_VALUES", read_values)
    data = load_perturb_data(make_adata(labels_with_pairs(30), fail_fraction=0.5), config, 0)
    cells = np.random.default_rng(0).permutation(data.n_cells)
    on_demand = data.counterfactual.rows(cells)
    data.counterfactual.prepare()
    assert data.counterfactual.table().shape == (data.n_cells, 12)
    np.testing.assert_array_equal(data.counterfactual.rows(cells), on_demand)
    assert (on_demand.sum(axis=1) > 0).mean() > 0.5


def test_the_medians_file_goes_with_the_data(config, tmp_path):
    adata = make_adata(labels_with_pairs(10))
    adata.write_h5ad(tmp_path / "d.h5ad")
    config.backed = True
    data = load_perturb_data(tmp_path / "d.h5ad", config, 0)
    next(iterate_batches(data, "train", 8, seed=0))
    folder = data.counterfactual._store.path.parent
    assert folder.is_dir()
    data.counts.close()
    del data
    gc.collect()
    assert not folder.exists()


def test_lazy_obs_reads_columns_and_name_blocks(tmp_path):
    adata = make_adata(["non-targeting", "A", "A+B", "B"] * 3)
    adata.obs["flag"] = [True, False] * 6
    adata.obs["score"] = np.arange(12, dtype=np.float32)
    adata.write_h5ad(tmp_path / "d.h5ad")
    with BackedH5ad(tmp_path / "d.h5ad") as file:
        obs = file.obs
        assert len(obs) == 12
        assert list(obs.columns) == list(adata.obs.columns)
        for column in ("perturbation", "flag", "score", "pct_counts_mt"):
            np.testing.assert_array_equal(np.asarray(obs[column]), np.asarray(adata.obs[column]))
        np.testing.assert_array_equal(obs.names(slice(3, 6)), adata.obs_names[3:6])
        np.testing.assert_array_equal(file.obs_names[np.arange(4, 9)], adata.obs_names[4:9])
        assert list(file.var_names) == list(adata.var_names)
        assert len(obs.duplicated_names()) == 0
        with pytest.raises(KeyError):
            obs["nope"]


def test_duplicate_names_are_found_across_name_blocks(tmp_path, monkeypatch):
    from cradle_jax.data import backed_file

    monkeypatch.setattr(backed_file, "NAME_BLOCK", 4)
    adata = make_adata(["non-targeting", "A"] * 6)
    adata.obs_names = [f"c{i}" for i in range(11)] + ["c2"]
    adata.write_h5ad(tmp_path / "d.h5ad")
    with BackedH5ad(tmp_path / "d.h5ad") as file:
        assert list(file.obs.duplicated_names()) == ["c2"]


@pytest.mark.parametrize(
    ("gap", "span", "kept_rows"),
    [(0, 2**20, 2**19), (5, 2**20, 2**19), (10**6, 2**20, 2**19), (10**6, 7, 2**19), (5, 7, 0)],
)
def test_backed_rows_read_in_spans_equal_the_in_memory_rows(
    tmp_path, monkeypatch, gap, span, kept_rows
):
    """Rows are read in runs merged across gaps of up to `gap` stored values (none, some, all),
    each run at most `span` values long, with the row pointers kept in memory or read per
    request (`kept_rows` 0)."""
    monkeypatch.setattr(counts_module, "SPAN_GAP_VALUES", gap)
    monkeypatch.setattr(counts_module, "SPAN_VALUES", span)
    monkeypatch.setattr(counts_module, "ROW_STARTS_IN_MEMORY", kept_rows)
    rng = np.random.default_rng(0)
    matrix = sp.random(300, 40, density=0.2, format="csr", random_state=1, dtype=np.float32)
    matrix.data = np.ceil(matrix.data * 9)
    matrix = sp.csr_matrix(matrix.multiply((np.arange(300) != 17)[:, None]))  # row 17 empty
    ad.AnnData(X=matrix).write_h5ad(tmp_path / "m.h5ad")
    backed = BackedCounts(tmp_path / "m.h5ad", "X")
    for size in (1, 2, 40, 300):
        index = rng.choice(300, size, replace=size == 300)
        index[0] = 17
        np.testing.assert_array_equal(backed.rows(index).toarray(), matrix[index].toarray())
    assert backed.stored_values_total() == matrix.nnz
    backed.close()


@pytest.mark.parametrize("dense", [False, True])
def test_rows_read_in_one_pass_equal_the_in_memory_rows(tmp_path, monkeypatch, dense):
    """Scattered rows read block by block in file order, none from some blocks, an empty row
    among them, from CSR and dense files."""
    monkeypatch.setattr(counts_module, "ROW_BLOCK", 16)
    matrix = sp.random(100, 30, density=0.3, format="csr", random_state=2, dtype=np.float32)
    matrix.data = np.ceil(matrix.data * 9)
    matrix = sp.csr_matrix(matrix.multiply((np.arange(100) != 40)[:, None]))  # row 40 empty
    ad.AnnData(X=matrix.toarray() if dense else matrix).write_h5ad(tmp_path / "m.h5ad")
    backed = BackedCounts(tmp_path / "m.h5ad", "X")
    wanted = np.array([0, 3, 15, 16, 40, 41, 90, 99])  # nothing from rows 17..39 or 48..89
    pieces = list(backed.rows_in_file_order(wanted))
    assert [len(rows) for rows, _ in pieces] == [3, 1, 2, 1, 1]
    np.testing.assert_array_equal(np.concatenate([rows for rows, _ in pieces]), wanted)
    read = sp.vstack([block for _, block in pieces]).toarray()
    np.testing.assert_array_equal(read, matrix[wanted].toarray())
    backed.close()
