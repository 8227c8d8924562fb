"""`generate` makes cells at the training data's depth by default, from library sizes the model
records; --library still fixes one depth; models saved before that record fall back to 10⁴ with
one warning line (docs/data.md#training-depth)."""

import json
import logging
import shutil

import anndata as ad
import numpy as np
import pytest

from cradle_jax.config import data_config
from cradle_jax.data import depth as depth_module
from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.data.depth import ALL_PASSING, CONTROLS, training_depth
from cradle_jax.evaluate.report.export import load_export
from cradle_jax.train.bundle import META_NAME, load_workdir
from tests.reliability.builders import tiny_adata
from tests.reliability.harness import run_cli
from tests.reliability.test_bad_runs import rewritten_export

FALLBACK = "saved without its training data's depth"


def generate(model: str, out, *extra: str):
    """`cradle-jax generate` of 100 cells each of A and B from `model` (--workdir=… or
    --export=…); the outcome and the cells written."""
    outcome = run_cli(
        "generate", model, "--perturbations=A,B", "--n_cells=100", f"--out={out}", *extra
    )
    assert outcome.code == 0, outcome.err
    return outcome, ad.read_h5ad(out)


def median_total(cells: ad.AnnData) -> float:
    return float(np.median(np.asarray(cells.X.sum(axis=1)).ravel()))


def training_controls_median(workdir) -> float:
    """The median library of the QC-pass control cells of a run's training data."""
    config = load_workdir(workdir).config
    data = load_perturb_data(config.data.path, config.data, config.seed)
    controls = (data.qc.max(axis=1) == 0) & (data.labels == data.vocabulary.control_label)
    return float(np.median(data.library_size[controls]))


def test_generate_draws_each_cell_from_the_training_datas_depth(trained_run, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        outcome, cells = generate(f"--workdir={trained_run}", tmp_path / "cells.h5ad")
    real = training_controls_median(trained_run)
    assert real < 100  # 16 genes of Poisson(3) counts, far from 10⁴
    np.testing.assert_allclose(median_total(cells), real, rtol=0.25)
    record = cells.uns["cradle_jax"]["library_size"]
    assert record["drawn_from"].startswith("the training data's QC-pass")
    assert record["median"] == pytest.approx(real, rel=0.1)
    assert "library sizes drawn from the training data's" in outcome.out
    assert not [r for r in caplog.records if FALLBACK in r.getMessage()]


def test_library_still_fixes_one_depth(trained_run, tmp_path):
    outcome, cells = generate(f"--workdir={trained_run}", tmp_path / "c.h5ad", "--library=2000")
    assert cells.uns["cradle_jax"]["library_size"] == {"fixed": 2000.0}
    np.testing.assert_allclose(median_total(cells), 2000, rtol=0.1)
    assert "library size 2000" in outcome.out


def test_the_same_seed_gives_the_same_cells(trained_run, tmp_path):
    model = f"--workdir={trained_run}"
    _, first = generate(model, tmp_path / "a.h5ad", "--seed=3")
    _, again = generate(model, tmp_path / "b.h5ad", "--seed=3")
    _, other = generate(model, tmp_path / "c.h5ad", "--seed=4")
    np.testing.assert_array_equal(first.X.toarray(), again.X.toarray())
    assert not np.array_equal(first.X.toarray(), other.X.toarray())


def test_the_export_carries_the_training_depth(trained_run, exported):
    recorded = json.loads((trained_run / META_NAME).read_text())["training_depth"]
    depth = load_export(exported)[0].training_depth
    assert depth.to_dict() == recorded
    assert depth.cells >= depth.library_sizes.size > 0


def test_a_model_saved_before_the_record_falls_back_to_1e4_with_one_warning(
    trained_run, exported, tmp_path, caplog
):
    old = tmp_path / "old_run"
    shutil.copytree(trained_run, old)
    meta = json.loads((old / META_NAME).read_text())
    del meta["training_depth"]
    (old / META_NAME).write_text(json.dumps(meta))
    old_export = rewritten_export(
        exported, tmp_path / "old.cradle", lambda arrays, meta: meta.pop("training_depth")
    )
    for model in (f"--workdir={old}", f"--export={old_export}"):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            _, cells = generate(model, tmp_path / "cells.h5ad")
        lines = [r.getMessage() for r in caplog.records if FALLBACK in r.getMessage()]
        assert len(lines) == 1, lines
        assert "library size 10000" in lines[0]
        assert cells.uns["cradle_jax"]["library_size"]["fixed"] == 1e4
        assert median_total(cells) > 5000


def passing(data) -> np.ndarray:
    """(N,) bool: the cells that pass QC."""
    return data.qc.max(axis=1) == 0


def test_the_depth_is_that_of_the_qc_pass_controls_sampled_by_the_seed(monkeypatch):
    """Controls three times as deep as the rest: theirs is the depth recorded, every one of
    them, or DEPTH_CELLS of them drawn by the seed."""
    adata = tiny_adata(100)  # about 70 QC-pass controls
    is_control = (adata.obs["perturbation"] == "non-targeting").to_numpy()
    adata.X = adata.X.multiply(np.where(is_control, 3, 1)[:, None]).tocsr()
    adata.obs["UMI_count"] = np.asarray(adata.X.sum(axis=1)).ravel()
    data = load_perturb_data(adata, data_config(), 0)
    controls = passing(data) & is_control
    depth = training_depth(data, seed=0)
    assert depth.drawn_from == CONTROLS
    assert depth.cells == controls.sum()
    np.testing.assert_array_equal(depth.library_sizes, data.library_size[controls])
    monkeypatch.setattr(depth_module, "DEPTH_CELLS", 10)
    sample = training_depth(data, seed=0).library_sizes
    assert sample.size == 10
    assert set(sample) <= set(depth.library_sizes)
    np.testing.assert_array_equal(training_depth(data, seed=0).library_sizes, sample)


def test_too_few_qc_pass_controls_give_the_depth_of_all_qc_pass_cells():
    few = tiny_adata(10, labels=("non-targeting", "A", "B", "A+B", "C", "D", "E", "F"))
    data = load_perturb_data(few, data_config(), 0)
    depth = training_depth(data, seed=0)
    assert depth.drawn_from == ALL_PASSING
    assert depth.cells == passing(data).sum()
    np.testing.assert_array_equal(depth.library_sizes, data.library_size[passing(data)])
