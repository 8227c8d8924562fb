"""Slow: `cell-eval run` (Arc Institute's evaluator, in its own venv made by `make cell-eval`)
accepts the files `cradle-jax predict` writes, as they are, for the model and for both
non-learned baselines (`--baseline`), and scores every metric of its full profile. cell-eval
logs a metric that crashes and leaves it out with exit status 0, so the test checks the columns,
not only the status."""

import csv
import os
import subprocess
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from cradle_jax.evaluate.cell_eval_files.baseline import baseline_prediction_pair
from cradle_jax.evaluate.cell_eval_files.model import prediction_pair
from cradle_jax.train.bundle import load_workdir

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[3]  # the repository root
FULL_PROFILE = (
    "overlap_at_N", "precision_at_N", "de_spearman_sig", "de_direction_match", "pr_auc",
    "roc_auc", "pearson_delta", "mse", "mae", "mse_delta", "mae_delta",
    "discrimination_score_l1", "pearson_edistance", "clustering_agreement",
)  # fmt: skip


def cell_eval_binary() -> Path:
    path = Path(os.environ.get("CELL_EVAL", ROOT / ".venv-celleval" / "bin" / "cell-eval"))
    assert path.is_file(), f"{path} not found: run `make cell-eval` (`make test-slow` does)"
    return path


@pytest.mark.parametrize("source", ["model", "control_mean", "additive"])
def test_cell_eval_runs_on_predict_output(trained, tmp_path, source):
    bundle = load_workdir(trained)
    real = ad.read_h5ad(bundle.config.data.path)
    pairs = sorted(label for label in real.obs["perturbation"].unique() if "+" in label)
    labels = [*bundle.vocabulary.singles[:3], pairs[0]]
    if source == "model":
        files = prediction_pair(bundle, real, labels, n_cells=60, seed=0)
    else:
        files = baseline_prediction_pair(bundle, real, labels, baseline=source, n_cells=60, seed=0)
    pred, ready = tmp_path / "pred.h5ad", tmp_path / "real.h5ad"
    files.prediction.write_h5ad(pred)
    files.real.write_h5ad(ready)

    out = tmp_path / "cell-eval"
    command = [
        str(cell_eval_binary()), "run", "-ap", str(pred), "-ar", str(ready),
        "--pert-col", "target_gene", "--control-pert", bundle.vocabulary.control_label,
        "-o", str(out), "--num-threads", "2", "--profile", "full",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    with (out / "agg_results.csv").open() as handle:
        rows = {row["statistic"]: row for row in csv.DictReader(handle)}
    missing = [metric for metric in FULL_PROFILE if metric not in rows["mean"]]
    assert not missing, f"cell-eval left out {missing}"
    assert float(rows["count"]["pearson_delta"]) == len(labels)
    assert np.isfinite(float(rows["mean"]["pearson_delta"]))
    print({metric: rows["mean"][metric] for metric in FULL_PROFILE})
