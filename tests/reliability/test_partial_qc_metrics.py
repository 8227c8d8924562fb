"""A real screen's partial, renamed, whole-transcriptome QC columns: used as given, the rest
computed, every criterion's source said and stored, and generated cells scored on the genes
they have (docs/data.md#qc-metrics, docs/metrics.md#qc-basis)."""

import dataclasses
import json
import shutil

import anndata as ad
import numpy as np
import pytest

from cradle_jax.config import data_config
from cradle_jax.data import qc_sources
from cradle_jax.data.dataset import load_perturb_data, with_generated_basis
from cradle_jax.data.qc import QCThresholds, compute_qc_metrics
from cradle_jax.data.simulate import SimulationConfig, simulate
from cradle_jax.evaluate.generation.cells import generated_counts
from cradle_jax.evaluate.report.run_plots import violin_sides
from cradle_jax.evaluate.scores.qc_rate import qc_pass_rates, score_generated_cells
from cradle_jax.train.bundle import META_NAME, load_workdir
from cradle_jax.train.keys import purpose_key
from tests.reliability.builders import FAST, tiny_adata, write
from tests.reliability.harness import assert_user_error, run_cli, snapshot
from tests.train.conftest import cli_overrides

RENAMED = "UMI_count=total_umis,ngenes=n_genes"
WHOLE = 20  # the file's obs counts 20 times the transcripts of the genes its matrix holds


def subset_screen(n_each: int = 40) -> ad.AnnData:
    """The reliability tests' tiny screen (16 genes) as a gene subset of a larger transcriptome:
    obs has whole-transcriptome UMI and gene counts under other names, and pct_counts_mt (there
    is no MT- gene among the 16); the other metrics are left to compute."""
    adata = tiny_adata(n_each)
    rng = np.random.default_rng(5)
    counts = adata.X.toarray()
    adata.obs = adata.obs[["perturbation", "pct_counts_mt"]].assign(
        total_umis=counts.sum(1) * WHOLE + rng.integers(0, 30, adata.n_obs),
        n_genes=(counts > 0).sum(1) * WHOLE + rng.integers(0, 30, adata.n_obs).astype(float),
    )
    return adata


@pytest.fixture(scope="module")
def screen(tmp_path_factory):
    return write(subset_screen(), tmp_path_factory.mktemp("screen") / "screen.h5ad")


@pytest.mark.parametrize("backed", [False, True])
def test_inspect_says_where_each_criterion_came_from(screen, backed):
    outcome = run_cli(
        "inspect", f"--data={screen}", f"--qc_columns={RENAMED}", f"--backed={backed}"
    )
    assert outcome.code == 0, outcome.err
    refitted = "generated cells: thresholds refitted over the model's genes"
    assert f"UMI_count          obs:total_umis; {refitted}" in outcome.out
    assert f"ngenes             obs:n_genes; {refitted}" in outcome.out
    assert (
        "pct_counts_mt      obs:pct_counts_mt; generated cells: not judged: cannot be computed "
        "over the model's genes (no gene matches ^MT-)"
    ) in outcome.out
    assert "pct_counts_ribo    unavailable: no gene matches ^RP[SL]" in outcome.out
    assert "obs has only some QC metrics" not in outcome.err


def test_inspect_json_records_the_sources(screen):
    outcome = run_cli("inspect", f"--data={screen}", f"--qc_columns={RENAMED}", "--json")
    assert outcome.code == 0, outcome.err
    summary = json.loads(outcome.out)
    assert summary["qc_sources"]["UMI_count"] == "obs:total_umis"
    assert summary["qc_thresholds"]["sources"] == summary["qc_sources"]
    basis = summary["qc_thresholds"]["generated_basis"]
    assert basis["medians"]["UMI_count"] < summary["qc_thresholds"]["medians"]["UMI_count"] / 10


@pytest.mark.parametrize(
    ("columns", "fragments"),
    [
        ("UMI=total_umis", ("unknown QC metric(s) 'UMI'", "UMI_count, ngenes")),
        ("UMI_count=umis", ("obs column(s) that obs lacks: 'umis' (for UMI_count)",)),
        ("UMI_count", ("'UMI_count' is not metric=column",)),
    ],
)
def test_bad_qc_columns_are_one_line_errors(screen, columns, fragments):
    assert_user_error(run_cli("inspect", f"--data={screen}", f"--qc_columns={columns}"), *fragments)


def test_train_refuses_bad_qc_columns_before_writing(screen, tmp_path):
    flags = cli_overrides(screen, **FAST, **{"data.qc_columns": "ngenes=genes_detected"})
    outcome = run_cli("train", *flags, f"--workdir={tmp_path / 'run'}")
    assert_user_error(outcome, "'genes_detected' (for ngenes)")
    assert snapshot(tmp_path) == {}


def test_train_stores_each_criterion_source_and_generated_cells_pass_on_the_same_basis(
    screen, tmp_path
):
    workdir = tmp_path / "run"
    flags = cli_overrides(screen, **FAST, **{"data.qc_columns": RENAMED})
    outcome = run_cli("train", *flags, f"--workdir={workdir}")
    assert outcome.code == 0, outcome.err
    record = json.loads((workdir / META_NAME).read_text())["qc_thresholds"]
    assert record["sources"]["UMI_count"] == "obs:total_umis"
    assert record["sources"]["ngenes"] == "obs:n_genes"
    assert record["sources"]["pct_counts_mt"] == "obs:pct_counts_mt"
    assert record["generated_basis"]["sources"]["UMI_count"] == "computed"

    bundle = load_workdir(workdir)
    labels = ["non-targeting", "A", "B", "A+B"]
    real_depth = float(np.median(np.asarray(subset_screen().X.sum(1)).ravel()))
    counts, cell_labels = generated_counts(
        bundle, labels, 30, key_data=purpose_key(0, "test"), library=real_depth
    )
    metrics, rates = score_generated_cells(
        counts, cell_labels, bundle.gene_names, bundle.qc_thresholds, seed=0
    )
    assert rates["criteria"] == ["qc_UMI_count", "qc_ngenes"]
    assert rates["basis"]["pct_counts_mt"].startswith("not judged: cannot be computed")
    assert rates["qc_pass_rate_t3"] > 0.5
    whole = QCThresholds.from_dict({**record, "generated_basis": None})  # the obs numbers
    assert qc_pass_rates(metrics, cell_labels, whole)["qc_pass_rate_t3"] == 0.0


def test_a_model_json_written_before_the_sources_still_loads(trained_run, tmp_path):
    old = tmp_path / "old_run"
    shutil.copytree(trained_run, old)
    meta = json.loads((old / META_NAME).read_text())
    del meta["qc_thresholds"]["sources"], meta["qc_thresholds"]["generated_basis"]
    del meta["config"]["data"]["qc_columns"]
    (old / META_NAME).write_text(json.dumps(meta))
    bundle = load_workdir(old)
    assert bundle.qc_thresholds.sources == {}
    assert bundle.qc_thresholds.for_generated_cells() is bundle.qc_thresholds
    out = tmp_path / "cells.h5ad"
    outcome = run_cli(
        "generate", f"--workdir={old}", "--perturbations=A", "--n_cells=5", f"--out={out}"
    )
    assert outcome.code == 0, outcome.err


def test_simulated_gene_subset_with_whole_transcriptome_obs_metrics():
    """A gene-subset screen on the simulator: 40 of 200 genes in the matrix, whole-transcriptome
    UMI_count, ngenes and pct_counts_mt in obs. Artifact-free cells over the 40 genes (the real
    ones, standing in for a perfect generator) pass the QC of the same basis about as often as
    real cells do, where thresholds fitted on the obs numbers pass none."""
    whole = simulate(SimulationConfig(n_cells=800, n_genes=200, n_perturbations=3, n_pairs=1)).adata
    full = compute_qc_metrics(whole.X, whole.var_names, whole.obs_names, seed=0, doublets=False)
    for metric in ("UMI_count", "ngenes", "pct_counts_mt"):
        whole.obs[metric] = full.table[metric].to_numpy()
    subset = whole[:, 60:100].copy()  # no MT- gene among them
    data = with_generated_basis(load_perturb_data(subset, data_config(), 0), data_config(), 0)
    clean = ~subset.obs["is_artifact"].to_numpy(bool)
    cells, labels = subset.X[clean], data.labels[clean]
    _, rates = score_generated_cells(cells, labels, data.gene_names, data.qc_thresholds, seed=0)
    assert rates["qc_pass_rate_t3"] > 0.8
    refitted = {key for key, value in rates["basis"].items() if "refitted" in value}
    assert refitted == {"UMI_count", "ngenes"}
    assert rates["basis"]["pct_counts_mt"].startswith("not judged")
    obs_thresholds = dataclasses.replace(data.qc_thresholds, generated_basis=None)
    _, old = score_generated_cells(cells, labels, data.gene_names, obs_thresholds, seed=0)
    assert old["qc_pass_rate_t3"] == 0.0


def test_the_qc_violins_compare_real_cells_over_the_models_genes(screen):
    """With whole-transcriptome UMI and gene counts in obs, the real side of the violins holds
    the real cells' metrics over the 16 modelled genes, and the lines drawn are the thresholds
    generated cells are scored against, not the obs numbers 20 times larger."""
    config = data_config()
    config.qc_columns = RENAMED
    data = with_generated_basis(load_perturb_data(str(screen), config, 0), config, 0)
    generated = data.qc_metrics.matrix.table.assign(perturbation=data.labels)
    real, shown, thresholds = violin_sides(data, data.qc_thresholds, generated, "A")
    counts = np.asarray(subset_screen().X.sum(1)).ravel()[data.labels == "A"]
    np.testing.assert_allclose(real["UMI_count"].to_numpy(), counts)
    assert real["UMI_count"].median() < data.qc_metrics.table["UMI_count"].median() / 10
    assert (shown["perturbation"] == "A").all()
    assert len(shown) == len(real)
    assert thresholds is data.qc_thresholds.generated_basis


def test_the_qc_violins_follow_the_sampled_basis_of_a_large_file(screen, monkeypatch):
    """A file larger than the basis sample: the real side holds the label's sampled cells,
    each with its own counts over the modelled genes."""
    monkeypatch.setattr(qc_sources, "BASIS_CELLS", 60)
    config = data_config()
    config.qc_columns = RENAMED
    data = with_generated_basis(load_perturb_data(str(screen), config, 0), config, 0)
    generated = data.qc_metrics.matrix.table.assign(perturbation="A")
    real, _, _ = violin_sides(data, data.qc_thresholds, generated, "A")
    rows = real.index.to_numpy()
    assert 0 < len(rows) < (data.labels == "A").sum()
    assert (data.labels[rows] == "A").all()
    counts = np.asarray(subset_screen().X.sum(1)).ravel()[rows]
    np.testing.assert_allclose(real["UMI_count"].to_numpy(), counts)
