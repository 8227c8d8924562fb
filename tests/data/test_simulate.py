"""The simulator: determinism, data contract, planted truth, artifacts, clean versions, files."""

import dataclasses
import json

import anndata as ad
import numpy as np
import pytest

from cradle_jax.data.errors import DataError
from cradle_jax.data.simulate import (
    CONTROL_LABEL,
    DAMAGED,
    DOUBLET,
    EMPTY,
    NONE,
    SimulationConfig,
    clean_counts,
    load_truth,
    simulate,
    write_simulation,
)

SMALL = SimulationConfig(
    n_cells=800, n_genes=120, n_perturbations=4, n_pairs=3, artifact_fraction=0.2, seed=5
)
# Few labels, many cells per label: enough to check the planted truth and the artifacts.
LARGE = SimulationConfig(
    n_cells=6000, n_genes=300, n_perturbations=5, n_pairs=3, artifact_fraction=0.2, seed=0
)


@pytest.fixture(scope="module")
def small():
    return simulate(SMALL)


@pytest.fixture(scope="module")
def large():
    return simulate(LARGE)


def _qc(X, gene_names):
    """UMI count, number of detected genes and percent mitochondrial counts per cell."""
    total = np.asarray(X.sum(axis=1)).ravel()
    mt = np.char.startswith(np.asarray(gene_names, dtype=str), "MT-")
    pct_mt = 100 * np.asarray(X[:, mt].sum(axis=1)).ravel() / np.maximum(total, 1)
    ngenes = np.diff(X.indptr).astype(float)
    return total, ngenes, pct_mt


def _mad_fail(values, t, below):
    """docs/data.md#qc-rules: raw MAD, fail below med − t·MAD or above med + t·MAD."""
    med = np.median(values)
    mad = np.median(np.abs(values - med))
    return values < med - t * mad if below else values > med + t * mad


def _assert_same(a, b):
    np.testing.assert_array_equal(a.adata.X.data, b.adata.X.data)
    np.testing.assert_array_equal(a.adata.X.indices, b.adata.X.indices)
    np.testing.assert_array_equal(a.adata.X.indptr, b.adata.X.indptr)
    assert a.adata.obs.equals(b.adata.obs)
    assert a.truth.keys() == b.truth.keys()
    for key in a.truth:
        np.testing.assert_array_equal(a.truth[key], b.truth[key], err_msg=key)


def test_same_seed_gives_identical_data_and_truth(small):
    _assert_same(small, simulate(SMALL))


def test_counts_and_truth_are_pinned():
    """A few numbers of one dataset in three row blocks, as the simulator gave them when its
    functions were split: any change of the draws or their order changes them."""
    sim = simulate(dataclasses.replace(SMALL, block_size=300))
    X, truth = sim.adata.X, sim.truth
    assert X.nnz == 83004
    assert X.sum(dtype=np.float64) == 2391300
    np.testing.assert_array_equal(X[0].indices[:6], [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(X[0].data[:6], [9, 4, 3, 4, 3, 1])
    counts = {"none": 640, "damaged": 72, "empty": 38, "doublet": 50}
    assert sim.adata.uns["simulation"]["artifact_counts"] == counts
    np.testing.assert_array_equal(truth["cell_label"][:10], [1, 2, 6, 0, 3, 1, 7, 0, 3, 4])
    partners = truth["doublet_partner"][truth["doublet_partner"] >= 0]
    np.testing.assert_array_equal(partners[:5], [52, 159, 211, 244, 65])
    np.testing.assert_allclose(
        truth["true_ate"][1, :4], [-0.32396787, -0.3126231, -0.31270626, -0.34444988], rtol=1e-6
    )
    assert truth["clean_data"].size == 17244
    assert truth["clean_data"].sum(dtype=np.float64) == 513923


def test_another_seed_gives_different_data(small):
    other = simulate(dataclasses.replace(SMALL, seed=6))
    assert not np.array_equal(small.truth["true_ate"], other.truth["true_ate"])
    assert not np.array_equal(small.truth["mask"], other.truth["mask"])
    assert small.adata.X.nnz != other.adata.X.nnz or not np.array_equal(
        small.adata.X.data, other.adata.X.data
    )


def test_counts_and_names_follow_the_data_contract(small):
    adata = small.adata
    X = adata.X
    assert X.format == "csr"
    assert adata.shape == (SMALL.n_cells, SMALL.n_genes)
    assert (X.data > 0).all()
    np.testing.assert_array_equal(X.data, np.round(X.data))
    names = adata.var_names
    assert names.is_unique
    assert adata.obs_names.is_unique
    assert names.str.startswith("MT-").sum() == 13
    assert names.str.match(r"^RP[SL]").sum() == 40
    assert names.str.match(r"^HB[^(P)]").sum() == 6
    assert set(adata.obs["artifact"].cat.categories) == {"none", "damaged", "empty", "doublet"}
    np.testing.assert_array_equal(adata.obs["is_artifact"], adata.obs["artifact"] != "none")


def test_labels_are_control_singles_and_pairs_of_known_singles(small):
    truth = small.truth
    labels = list(truth["labels"])
    singles = set(truth["singles"])
    assert labels[0] == CONTROL_LABEL
    assert all("+" not in s for s in singles)
    assert set(small.adata.obs["perturbation"].astype(str)) <= set(labels)
    pairs = [label for label in labels if "+" in label]
    assert len(pairs) == len(set(pairs)) == SMALL.n_pairs
    for pair in pairs:
        members = pair.split("+")
        assert members == sorted(members)
        assert set(members) <= singles
    counts = small.adata.obs["perturbation"].value_counts()
    assert counts[CONTROL_LABEL] == round(SMALL.control_fraction * SMALL.n_cells)
    assert counts.drop(CONTROL_LABEL).max() - counts.drop(CONTROL_LABEL).min() <= 1


def test_planted_ate_is_recovered_from_clean_cells(large):
    X, truth = large.adata.X, large.truth
    clean = truth["artifact"] == NONE
    total = np.asarray(X.sum(axis=1)).ravel()
    means = []
    for k in range(truth["labels"].size):
        cells = np.flatnonzero(clean & (truth["cell_label"] == k))
        means.append(np.log2(1 + 1e4 * X[cells].toarray() / total[cells, None]).mean(axis=0))
    data_ate = np.stack(means[1:]) - means[0]
    r = np.corrcoef(data_ate.ravel(), truth["true_ate"][1:].ravel())[0, 1]
    assert r >= 0.95, r
    np.testing.assert_array_equal(truth["true_ate"][0], 0)
    assert np.abs(truth["true_ate"][1:]).max(axis=1).min() > 1  # every label has clear effects


def test_de_gene_sets_are_the_largest_effects_with_stable_ties(large):
    ate = large.truth["true_ate"]
    for k, name in ((20, "de_genes_top20"), (50, "de_genes_top50")):
        top = large.truth[name]
        assert top.shape == (ate.shape[0], k)
        np.testing.assert_array_equal(top, np.argsort(-np.abs(ate), axis=1, kind="stable")[:, :k])
    np.testing.assert_array_equal(large.truth["de_genes_top20"][0], np.arange(20))  # control: ties


def test_mask_embedding_and_interactions_are_planted(large):
    truth = large.truth
    active = truth["mask"].sum(axis=1)
    assert ((active >= 1) & (active <= 3)).all()
    np.testing.assert_array_equal(truth["embedding"][truth["mask"] == 0], 0)
    assert truth["has_interaction"].sum() == round(LARGE.interaction_fraction * LARGE.n_pairs)
    assert (np.abs(truth["interaction"]).sum(axis=1) > 0).tolist() == truth[
        "has_interaction"
    ].tolist()


def test_max_mask_dims_bounds_each_singles_mask():
    config = dataclasses.replace(SMALL, n_perturbations=12, n_pairs=0, max_mask_dims=1)
    truth = simulate(config).truth
    np.testing.assert_array_equal(truth["mask"].sum(axis=1), 1)
    np.testing.assert_array_equal(truth["embedding"] != 0, truth["mask"] == 1)


def test_artifacts_look_like_artifacts(large):
    truth = large.truth
    total, _, pct_mt = _qc(large.adata.X, large.adata.var_names)
    kind = truth["artifact"]
    clean_total, clean_mt = np.median(total[kind == NONE]), np.median(pct_mt[kind == NONE])
    assert 2 < clean_mt < 8
    assert np.median(pct_mt[kind == DAMAGED]) > 3 * clean_mt
    assert np.median(total[kind == DAMAGED]) < 0.5 * clean_total
    assert np.median(total[kind == EMPTY]) < 0.1 * clean_total
    assert np.median(total[kind == DOUBLET]) > 1.5 * clean_total
    observed = (kind != NONE).mean()
    tolerance = 4 * np.sqrt(LARGE.artifact_fraction * (1 - LARGE.artifact_fraction) / kind.size)
    assert abs(observed - LARGE.artifact_fraction) < tolerance


def test_toxic_perturbations_have_more_damaged_cells(large):
    truth = large.truth
    toxic_cell = truth["label_toxic"][truth["cell_label"]]
    damaged = truth["artifact"] == DAMAGED
    assert truth["is_toxic"].any()
    assert damaged[toxic_cell].mean() > 2 * damaged[~toxic_cell].mean()
    summary = large.adata.uns["simulation"]
    assert summary["toxic_perturbations"] == truth["singles"][truth["is_toxic"]].tolist()


def test_mad_rules_flag_damaged_and_empty_cells_not_clean_ones(large):
    total, ngenes, pct_mt = _qc(large.adata.X, large.adata.var_names)
    fail = (
        _mad_fail(total, 3, below=True)
        | _mad_fail(ngenes, 3, below=True)
        | _mad_fail(pct_mt, 3, below=False)
    )
    kind = large.truth["artifact"]
    assert fail[kind == DAMAGED].mean() >= 0.8
    assert fail[kind == EMPTY].mean() >= 0.8
    assert fail[kind == NONE].mean() <= 0.1


def test_clean_versions_of_artifact_cells(large):
    X, truth = large.adata.X, large.truth
    kind = truth["artifact"]
    rows = truth["clean_rows"]
    np.testing.assert_array_equal(rows, np.flatnonzero(kind != NONE))
    clean = clean_counts(truth, X.shape[1])
    assert clean.shape == (rows.size, X.shape[1])

    # Clean rows look like ordinary cells.
    _, _, mt_clean = _qc(clean, large.adata.var_names)
    total, _, pct_mt = _qc(X, large.adata.var_names)
    assert abs(np.median(mt_clean) - np.median(pct_mt[kind == NONE])) < 1
    clean_total = np.asarray(clean.sum(axis=1)).ravel()
    assert 0.8 < np.median(clean_total) / np.median(total[kind == NONE]) < 1.25

    # Damaged cells are thinned clean cells with their MT counts intact.
    position = {cell: i for i, cell in enumerate(rows)}
    mt = large.adata.var_names.str.startswith("MT-")
    for cell in np.flatnonzero(kind == DAMAGED)[:50]:
        observed, before = X[cell].toarray()[0], clean[position[cell]].toarray()[0]
        assert (observed <= before).all()
        np.testing.assert_array_equal(observed[mt], before[mt])

    # Doublets are their own clean counts plus another cell's clean counts.
    def clean_row(cell):
        return clean[position[cell]] if cell in position else X[cell]

    for cell in np.flatnonzero(kind == DOUBLET)[:50]:
        partner = truth["doublet_partner"][cell]
        assert partner >= 0
        assert partner != cell
        expected = (clean_row(cell) + clean_row(partner)).toarray()
        np.testing.assert_array_equal(X[cell].toarray(), expected)
    assert (truth["doublet_partner"][kind != DOUBLET] == -1).all()


def test_write_round_trips(small, tmp_path):
    data_path, truth_path = write_simulation(small, tmp_path / "sim.h5ad")
    assert data_path == tmp_path / "sim.h5ad"
    assert truth_path == tmp_path / "sim.truth.npz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim.h5ad", "sim.truth.npz"]
    adata = ad.read_h5ad(data_path)
    np.testing.assert_array_equal(adata.X.toarray(), small.adata.X.toarray())
    assert adata.obs.equals(small.adata.obs)
    assert list(adata.var_names) == list(small.adata.var_names)
    assert adata.uns["simulation"]["truth_file"] == "sim.truth.npz"
    truth = load_truth(truth_path)
    assert truth.keys() == small.truth.keys()
    for key, value in small.truth.items():
        np.testing.assert_array_equal(truth[key], value, err_msg=key)
        assert truth[key].dtype == value.dtype, key


def test_summary_in_uns_is_json(small):
    summary = small.adata.uns["simulation"]
    text = json.dumps(summary)
    assert SimulationConfig(**json.loads(text)["config"]) == SMALL
    assert summary["labels"] == small.truth["labels"].tolist()
    assert sum(summary["artifact_counts"].values()) == SMALL.n_cells


def test_failed_write_leaves_no_file(small, tmp_path, monkeypatch):
    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        write_simulation(small, tmp_path / "sim.h5ad")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_data_write_leaves_no_partial_file(small, tmp_path, monkeypatch):
    def half_written(self, filename, **kwargs):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise OSError("interrupted")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", half_written)
    with pytest.raises(OSError, match="interrupted"):
        write_simulation(small, tmp_path / "sim.h5ad")
    assert list(tmp_path.iterdir()) == []


def test_write_to_a_directory_fails_cleanly(small, tmp_path):
    target = tmp_path / "taken.h5ad"
    target.mkdir()
    with pytest.raises(DataError, match="is a directory"):
        write_simulation(small, target)
    assert [p.name for p in tmp_path.iterdir()] == ["taken.h5ad"]
    assert list(target.iterdir()) == []
    with pytest.raises(DataError, match=r"\.h5ad"):
        write_simulation(small, tmp_path / "sim.csv")


def test_write_under_a_file_fails_cleanly(small, tmp_path):
    """An unwritable target (its parent is a plain file) raises and leaves nothing behind."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    with pytest.raises(OSError, match="blocker"):
        write_simulation(small, blocker / "sim.h5ad")
    assert [p.name for p in tmp_path.iterdir()] == ["blocker"]


def test_load_truth_of_a_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_truth(tmp_path / "nope.truth.npz")


@pytest.mark.parametrize(
    "changes",
    [
        {"n_pairs": 0, "artifact_fraction": 0.0},
        {"n_perturbations": 1, "n_pairs": 0, "n_latent": 1, "toxic_fraction": 0.0},
        {"block_size": 1, "n_cells": 60, "artifact_fraction": 0.5},
    ],
)
def test_edge_configs_simulate(changes):
    config = dataclasses.replace(SMALL, **changes)
    sim = simulate(config)
    assert sim.adata.shape == (config.n_cells, config.n_genes)
    assert sim.truth["true_ate"].shape == (config.n_labels, config.n_genes)
    assert sim.truth["clean_rows"].size == sim.adata.obs["is_artifact"].sum()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"n_perturbations": 4, "n_pairs": 7}, "n_pairs"),
        ({"n_pairs": -1}, "n_pairs"),
        ({"n_genes": 60}, "n_genes"),
        ({"control_fraction": 1.0}, "control_fraction"),
        ({"control_fraction": 0.0}, "control_fraction"),
        ({"artifact_fraction": 1.0}, "artifact_fraction"),
        ({"artifact_fraction": -0.1}, "artifact_fraction"),
        ({"interaction_fraction": 1.5}, "interaction_fraction"),
        ({"artifact_perturbation_dependence": 0.0}, "artifact_perturbation_dependence"),
        ({"n_cells": 5}, "n_cells"),
        ({"n_cells": 2.5}, "n_cells"),
        ({"n_latent": 0}, "n_latent"),
        ({"max_mask_dims": 0}, "max_mask_dims"),
        ({"seed": -1}, "seed"),
        ({"damaged_share": 0.9}, "damaged_share"),
        ({"library_median": float("nan")}, "library_median"),
        ({"damaged_keep": (0.5, 0.2)}, "damaged_keep"),
    ],
)
def test_invalid_config_names_the_field(changes, field):
    with pytest.raises(DataError, match=field):
        dataclasses.replace(SMALL, **changes)
