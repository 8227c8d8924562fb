"""Counterfactuals of real cells (`predict(adata, source="cells")`) and their held-out scores."""

import numpy as np
import pandas as pd
import pytest

from cradle_jax.data.dataset import load_perturb_data, read_h5ad
from cradle_jax.data.errors import DataError
from cradle_jax.data.splits import SPLIT_CODES
from cradle_jax.evaluate.generation.cells import counterfactual_anndata
from cradle_jax.evaluate.generation.counterfactual import counterfactual_counts
from cradle_jax.evaluate.scores.cell_sets import compare_to_real, mean_profile
from cradle_jax.evaluate.scores.held_out import counterfactual_vs_prior
from cradle_jax.train.bundle import load_workdir
from cradle_jax.train.keys import purpose_key


@pytest.fixture(scope="module")
def model(trained):
    bundle = load_workdir(trained)
    adata = read_h5ad(bundle.config.data.path)
    return bundle, adata


def controls_of(bundle, adata, n: int | None = None):
    cells = adata[adata.obs["perturbation"] == bundle.vocabulary.control_label]
    return cells[:n].copy() if n else cells.copy()


def test_every_cell_is_decoded_under_every_label_in_its_order(model):
    bundle, adata = model
    cells = controls_of(bundle, adata, 30)
    a, b = bundle.vocabulary.singles[:2]
    labels = [a, f"{a}+{b}"]
    result = counterfactual_anndata(bundle, cells, labels, seed=3, doublets=False)
    assert result.n_obs == 60
    assert result.obs["perturbation"].tolist() == [a] * 30 + [f"{a}+{b}"] * 30
    assert result.obs["source_cell"].tolist() == list(cells.obs_names) * 2
    assert result.obs_names[31] == f"{a}+{b}|{cells.obs_names[1]}"
    assert result.uns["cradle_jax"]["source"] == "cells"
    again = counterfactual_anndata(bundle, cells, labels, seed=3, doublets=False)
    np.testing.assert_array_equal(result.X.toarray(), again.X.toarray())
    other = counterfactual_anndata(bundle, cells, labels, seed=4, doublets=False)
    assert not np.array_equal(result.X.toarray(), other.X.toarray())


def test_cells_keep_their_own_library_size_unless_one_is_given(model):
    bundle, adata = model
    cells = controls_of(bundle, adata)
    own = np.asarray(cells.X.sum(axis=1)).ravel()
    control = [bundle.vocabulary.control_label]
    counts = counterfactual_counts(bundle, cells, control, purpose_key(0, "t"))
    totals = counts[0].sum(axis=1)
    ranks = pd.Series(own).rank().corr(pd.Series(totals).rank())
    assert ranks > 0.8, ranks
    assert abs(np.median(totals) / np.median(own) - 1) < 0.2
    fixed = counterfactual_counts(bundle, cells, control, purpose_key(0, "t"), library=5000.0)
    assert abs(np.median(fixed[0].sum(axis=1)) / 5000 - 1) < 0.2


def test_a_cells_draws_depend_on_its_row_alone_not_on_batches_or_other_cells(model):
    bundle, adata = model
    cells = controls_of(bundle, adata, 40)
    label = [bundle.vocabulary.singles[0]]
    key = purpose_key(0, "t")
    whole = counterfactual_counts(bundle, cells, label, key, batch_size=64)
    np.testing.assert_array_equal(
        counterfactual_counts(bundle, cells, label, key, batch_size=16), whole
    )
    first = counterfactual_counts(bundle, cells[:25].copy(), label, key, batch_size=64)
    assert first.shape == (1, 25, whole.shape[2])
    np.testing.assert_array_equal(first, whole[:, :25])


def test_cells_the_model_cannot_read_are_refused(model):
    bundle, adata = model
    cells = controls_of(bundle, adata, 5)
    with pytest.raises(DataError, match="unknown perturbation 'NOPE'"):
        counterfactual_counts(bundle, cells, ["NOPE"], purpose_key(0, "t"))
    with pytest.raises(DataError, match="genes are missing"):
        counterfactual_counts(
            bundle, cells[:, 1:].copy(), [bundle.vocabulary.singles[0]], purpose_key(0, "t")
        )
    with pytest.raises(DataError, match="counts is empty: 0 cells"):
        counterfactual_counts(
            bundle, cells[:0].copy(), [bundle.vocabulary.singles[0]], purpose_key(0, "t")
        )


def test_cell_set_scores_match_a_hand_computation():
    rng = np.random.default_rng(0)
    sets = [rng.poisson(3.0, (n, 6)).astype(float) for n in (5, 4, 7, 3)]

    def profile(x):
        return np.log2(1 + 1e4 * x / x.sum(axis=1, keepdims=True)).mean(axis=0)

    np.testing.assert_allclose(mean_profile(sets[0]), profile(sets[0]))
    scores = compare_to_real(*sets)
    predicted = profile(sets[0]) - profile(sets[1])
    real = profile(sets[2]) - profile(sets[3])
    assert scores["ATE_pearsonr"] == pytest.approx(np.corrcoef(predicted, real)[0, 1])
    rmse = np.sqrt(np.mean((profile(sets[0]) - profile(sets[2])) ** 2))
    assert scores["mean_rmse"] == pytest.approx(rmse)


def test_held_out_combinations_are_scored_for_both_sources(model):
    bundle, adata = model
    data = load_perturb_data(adata, bundle.config.data, bundle.config.seed)
    table = counterfactual_vs_prior(bundle, adata, data, seed=0)
    held_out = sorted(
        set(data.labels[data.split == SPLIT_CODES["test"]]) - {bundle.vocabulary.control_label}
    )
    assert sorted(table["perturbation"].unique()) == held_out
    assert all("+" in label for label in held_out)
    assert table.groupby("perturbation")["source"].apply(sorted).tolist() == [
        ["cells", "prior"]
    ] * len(held_out)
    assert np.isfinite(table[["ATE_pearsonr", "mean_rmse"]].to_numpy()).all()
