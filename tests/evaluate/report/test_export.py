"""An export reproduces the workdir's evaluation exactly, without the training data."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cradle_jax.data.dataset import load_perturb_data
from cradle_jax.evaluate.report.export import load_export
from cradle_jax.evaluate.report.run import evaluate
from cradle_jax.evaluate.scores.data_reference import data_reference
from cradle_jax.train.bundle import load_workdir
from cradle_jax.train.errors import RunError
from tests.train.conftest import ROOT


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "cradle_jax", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "model.cradle"
    result = cli("export", f"--workdir={trained}", f"--out={path}")
    assert result.returncode == 0, result.stderr[-3000:]
    return path


def test_evaluating_the_export_reproduces_the_workdir_metrics_exactly(trained, exported):
    bundle = load_workdir(trained)
    data = load_perturb_data(bundle.config.data.path, bundle.config.data, bundle.config.seed)
    truth = dict(np.load(bundle.config.data.path.replace(".h5ad", ".truth.npz")))
    reference = data_reference(bundle, data, bundle.config.eval, seed=0, truth=truth)
    from_workdir, _, _ = evaluate(bundle, reference, bundle.config.eval, seed=0)
    bundle2, reference2 = load_export(exported)
    from_export, _, _ = evaluate(bundle2, reference2, bundle2.config.eval, seed=0)
    assert from_export == from_workdir
    assert "truth" in from_export
    assert "test_iwelbo" in from_export


def test_the_cli_evaluates_and_generates_from_the_export_alone(exported, tmp_path):
    result = cli("evaluate", f"--export={exported}", f"--out={tmp_path / 'results'}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "results" / "metrics.json").read_text())
    assert metrics["headline"]["split"] == "test"
    bundle, _ = load_export(exported)
    pair = "+".join(bundle.vocabulary.singles[:2])
    out = tmp_path / "cells.h5ad"
    result = cli(
        "generate", f"--export={exported}", f"--perturbations={pair}", "--n_cells=5", f"--out={out}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.exists()


def test_an_export_from_a_newer_format_or_not_an_export_is_refused(exported, tmp_path):
    with np.load(exported) as stored:
        arrays = {name: stored[name] for name in stored.files}
    meta = json.loads(str(arrays["meta"]))
    meta["format_version"] = 99
    arrays["meta"] = np.array(json.dumps(meta))
    newer = tmp_path / "newer.cradle"
    with open(newer, "wb") as handle:
        np.savez(handle, **arrays)
    with pytest.raises(RunError, match="export format 99; this cradle-jax reads up to 1"):
        load_export(newer)
    junk = tmp_path / "junk.cradle"
    junk.write_text("not a model")
    with pytest.raises(RunError, match="is not a cradle-jax export"):
        load_export(junk)
