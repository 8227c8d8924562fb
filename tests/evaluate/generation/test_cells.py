"""`cradle-jax generate`: deterministic artifact-free cells as AnnData that round-trips."""

import anndata as ad
import numpy as np
import pytest

from cradle_jax.data.errors import DataError
from cradle_jax.evaluate.generation.cells import (
    generated_anndata,
    parse_perturbations,
    write_anndata,
)
from cradle_jax.train.bundle import load_workdir


@pytest.fixture(scope="module")
def bundle(trained):
    return load_workdir(trained)


def test_unseen_combinations_of_known_singles_are_allowed_and_unknown_names_are_not(bundle):
    a, b, c = bundle.vocabulary.singles[:3]
    assert parse_perturbations(f"{b}+{a}, {c}", bundle) == [f"{a}+{b}", c]
    with pytest.raises(DataError, match="unknown perturbation 'NOPE'"):
        parse_perturbations(f"{a},NOPE+{b}", bundle)


def test_generation_is_deterministic_for_a_seed_and_round_trips(bundle, tmp_path):
    a, b = bundle.vocabulary.singles[:2]
    labels = [bundle.vocabulary.control_label, f"{a}+{b}"]
    first = generated_anndata(bundle, labels, 12, seed=3, doublets=False)
    again = generated_anndata(bundle, labels, 12, seed=3, doublets=False)
    other = generated_anndata(bundle, labels, 12, seed=4, doublets=False)
    np.testing.assert_array_equal(first.X.toarray(), again.X.toarray())
    assert not np.array_equal(first.X.toarray(), other.X.toarray())
    assert first.shape == (24, len(bundle.gene_names))
    assert first.obs["perturbation"].tolist() == [labels[0]] * 12 + [labels[1]] * 12
    np.testing.assert_array_equal(first.obs["UMI_count"], first.X.sum(axis=1).A1)
    path = write_anndata(first, tmp_path / "cells.h5ad")
    assert [p.name for p in tmp_path.iterdir()] == ["cells.h5ad"]
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.X.toarray(), first.X.toarray())
    assert back.obs["perturbation"].tolist() == first.obs["perturbation"].tolist()
    assert list(back.var_names) == list(bundle.gene_names)
    depth = back.uns["cradle_jax"]["library_size"]  # the training data's, by default
    assert depth["drawn_from"].startswith("the training data's QC-pass")
    assert depth["median"] == float(np.median(bundle.training_depth.library_sizes))
