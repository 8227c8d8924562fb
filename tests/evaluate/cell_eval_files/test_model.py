"""`cradle-jax predict` writes files that meet cell-eval's documented input contract.

cell-eval (`cell-eval run -ap pred.h5ad -ar real.h5ad --pert-col target_gene --control-pert
non-targeting`) requires: the same var_names in the same order, the same perturbation label set in
both files with control cells present in both, and log1p-normalised values (a file of whole
numbers it re-normalises itself).
"""

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from cradle_jax.data.errors import DataError
from cradle_jax.evaluate.cell_eval_files.model import log_normalized, prediction_pair
from cradle_jax.train.bundle import load_workdir
from tests.reliability.harness import run_cli


@pytest.fixture(scope="module")
def bundle(trained):
    return load_workdir(trained)


@pytest.fixture(scope="module")
def real(bundle):
    return ad.read_h5ad(bundle.config.data.path)


def a_pair(real) -> str:
    """A combination label of the data (the combinations split holds some out of training)."""
    pairs = [label for label in real.obs["perturbation"].unique() if "+" in label]
    return sorted(pairs)[0]


def dense(matrix) -> np.ndarray:
    return matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)


def test_log_normalized_is_log1p_of_counts_scaled_to_1e4():
    counts = np.array([[1, 0, 3], [0, 0, 0], [2, 2, 0]], np.float32)
    totals = counts.sum(axis=1, keepdims=True)
    expected = np.log1p(
        np.divide(counts * 1e4, totals, where=totals > 0, out=np.zeros_like(counts))
    )
    np.testing.assert_allclose(dense(log_normalized(sp.csr_matrix(counts))), expected, rtol=1e-6)


def check_contract(pair, labels: list[str], column: str = "target_gene") -> None:
    prediction, real = pair.prediction, pair.real
    assert list(prediction.var_names) == list(real.var_names)
    assert set(prediction.obs[column]) == set(real.obs[column]) == set(labels)
    for adata in (prediction, real):
        counts = dense(adata.layers["counts"])
        assert np.all(counts >= 0)
        assert np.all(counts == np.round(counts))
        totals = counts.sum(axis=1, keepdims=True)
        expected = np.log1p(np.divide(counts * 1e4, totals, where=totals > 0, out=counts * 0))
        np.testing.assert_allclose(dense(adata.X), expected, rtol=1e-5, atol=1e-6)
        assert np.any(dense(adata.X) % 1 != 0), "cell-eval would take whole numbers for counts"
        record = adata.uns["cradle_jax"]
        assert (record["target_sum"], record["transform"]) == (1e4, "log1p")
        assert record["perturbation_column"] == column


def test_prediction_and_real_files_meet_the_cell_eval_contract(bundle, real):
    control = bundle.vocabulary.control_label
    a, b = bundle.vocabulary.singles[:2]
    pair_label = a_pair(real)
    pair = prediction_pair(bundle, real, [a, b, pair_label], n_cells=7, seed=0)
    check_contract(pair, [control, a, b, pair_label])
    counts = pair.prediction.obs["target_gene"].value_counts()
    assert set(counts) == {7}
    assert pair.prediction.uns["cradle_jax"]["controls"] == "generated"
    real_labels = real.obs["perturbation"].astype(str)
    assert pair.real.n_obs == real_labels.isin([control, a, b, pair_label]).sum()
    again = prediction_pair(bundle, real, [a, b, pair_label], n_cells=7, seed=0)
    np.testing.assert_array_equal(dense(again.prediction.X), dense(pair.prediction.X))


def test_real_controls_are_copied_into_the_prediction_when_asked(bundle, real):
    control = bundle.vocabulary.control_label
    single = bundle.vocabulary.singles[0]
    pair = prediction_pair(
        bundle, real, [single], n_cells=5, seed=0, controls="real", perturbation_column="gene"
    )
    check_contract(pair, [control, single], column="gene")
    predicted_controls = pair.prediction[pair.prediction.obs["gene"] == control]
    real_controls = pair.real[pair.real.obs["gene"] == control]
    assert list(predicted_controls.obs_names) == list(real_controls.obs_names)
    np.testing.assert_array_equal(dense(predicted_controls.X), dense(real_controls.X))
    assert pair.prediction.uns["cradle_jax"]["controls"] == "real"


def test_a_real_file_without_a_gene_or_a_label_is_refused_by_name(bundle, real):
    single = bundle.vocabulary.singles[0]
    with pytest.raises(DataError, match=f"lacks 1 of the model's genes.*{real.var_names[3]}"):
        prediction_pair(
            bundle, real[:, [i != 3 for i in range(real.n_vars)]], [single], n_cells=2, seed=0
        )
    without = real[real.obs["perturbation"] != single]
    with pytest.raises(DataError, match=f"no cell of '{single}'"):
        prediction_pair(bundle, without, [single], n_cells=2, seed=0)
    with pytest.raises(DataError, match="--controls must be one of generated, real"):
        prediction_pair(bundle, real, [single], n_cells=2, seed=0, controls="both")


def test_cli_writes_both_files_or_neither(bundle, trained, tmp_path):
    single = bundle.vocabulary.singles[1]
    pred, ready = tmp_path / "pred.h5ad", tmp_path / "real_ready.h5ad"
    common = [f"--workdir={trained}", f"--real={bundle.config.data.path}", f"--out={pred}"]
    outcome = run_cli("predict", *common, f"--perturbations={single}", "--n_cells=3",
                      f"--real_out={ready}")  # fmt: skip
    assert outcome.code == 0, outcome.err
    assert "cell-eval run -ap" in outcome.out
    written = ad.read_h5ad(pred), ad.read_h5ad(ready)
    assert list(written[0].var_names) == list(written[1].var_names)
    assert set(written[0].obs["target_gene"]) == set(written[1].obs["target_gene"])

    pred.unlink()
    ready.unlink()
    outcome = run_cli("predict", *common, "--perturbations=NOPE", f"--real_out={ready}")
    assert outcome.code == 2
    assert "unknown perturbation 'NOPE'" in outcome.err
    assert sorted(tmp_path.iterdir()) == []


def test_predicted_cells_have_the_depth_of_the_real_qc_pass_controls(bundle, real):
    """By default each generated cell draws its library size from the real QC-pass controls:
    predicted and real cells are compared at the same depth, not at 10⁴ against ~10³."""
    from cradle_jax.evaluate.cell_eval_files.model import qc_pass_of

    single = bundle.vocabulary.singles[0]
    pair = prediction_pair(bundle, real, [single], n_cells=200, seed=0)
    control = bundle.vocabulary.control_label
    controls = np.flatnonzero((real.obs["perturbation"] == control).to_numpy())
    passed, _ = qc_pass_of(bundle, real, controls)
    genes = real.var_names.get_indexer(bundle.gene_names.astype(str))
    real_depth = np.asarray(real.X[controls[passed]][:, genes].sum(axis=1)).ravel()
    record = pair.prediction.uns["cradle_jax"]["generated_library_size"]
    assert record["cells"] == int((real_depth > 0).sum())
    assert record["median"] == pytest.approx(np.median(real_depth[real_depth > 0]))
    predicted_depth = dense(pair.prediction.layers["counts"]).sum(axis=1)
    assert np.median(predicted_depth) == pytest.approx(np.median(real_depth), rel=0.25)
    fixed = prediction_pair(bundle, real, [single], n_cells=50, seed=0, library=1e4)
    assert fixed.prediction.uns["cradle_jax"]["generated_library_size"] == {"fixed": 1e4}
    fixed_depth = dense(fixed.prediction.layers["counts"]).sum(axis=1)
    assert np.median(fixed_depth) == pytest.approx(1e4, rel=0.25)
    assert np.median(real_depth) < 0.5e4  # the test separates the two depths
