"""Legal but odd inputs train without NaN and behave as the README says.

No QC-fail cells: no cell has a counterfactual reference, so the cf term is 0, and α (the fail
share) is 0; only fail cells: α is 1. Either way training says so when it starts. One
perturbation, genes or cells without a single count, and a run stopped inside its first epoch
are ordinary runs.
"""

import json
import math
from pathlib import Path

from tests.reliability.builders import FAST, tiny_adata, with_counts, without_fail_cells, write
from tests.reliability.harness import assert_user_error, run_cli
from tests.train.conftest import cli_overrides


def train(adata, folder: Path, **overrides):
    """Train on `adata` in folder/run; the outcome and the epoch records of metrics.jsonl."""
    data = write(adata, folder / "data.h5ad")
    workdir = folder / "run"
    outcome = run_cli(
        "train", *cli_overrides(data, **{**FAST, **overrides}), f"--workdir={workdir}"
    )
    assert outcome.code == 0, outcome.err[-3000:]
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return outcome, [r for r in records if "epoch" in r]


def assert_finite(records: list[dict]) -> None:
    values = [v for r in records for k, v in r.items() if k != "step" and k != "epoch"]
    assert values, "nothing was logged"
    assert all(isinstance(v, float) and math.isfinite(v) for v in values), records


def test_no_fail_cells(tmp_path):
    outcome, epochs = train(without_fail_cells(tiny_adata()), tmp_path)
    assert "the training split has no QC-fail cells" in outcome.out
    assert "loss.alpha=off" in outcome.out
    assert_finite(epochs)
    assert epochs[-1]["train/counterfactual_kl"] == 0.0  # no references
    assert epochs[-1]["train/alpha"] == 0.0


def test_only_fail_cells(tmp_path):
    adata = tiny_adata()
    adata.obs["predicted_doublet"] = True
    outcome, epochs = train(adata, tmp_path)
    assert "the training split has only QC-fail cells" in outcome.out
    assert_finite(epochs)
    assert epochs[-1]["train/alpha"] == 1.0


def test_one_perturbation(tmp_path):
    outcome, epochs = train(tiny_adata(80, labels=("non-targeting", "A")), tmp_path)
    assert_finite(epochs)
    assert "QC-fail" not in outcome.out  # both classes present: nothing to say


def test_genes_and_cells_without_counts(tmp_path):
    adata = tiny_adata()
    counts = adata.X.toarray()
    counts[:, :3] = 0  # three genes never seen
    counts[::7] = 0  # and every seventh cell empty
    _, epochs = train(with_counts(adata, counts), tmp_path)
    assert_finite(epochs)


def test_run_stopped_inside_its_first_epoch(tiny_data, tmp_path):
    workdir = tmp_path / "run"
    overrides = {**FAST, "train.max_steps": 1, "train.log_every_steps": 1}
    outcome = run_cli("train", *cli_overrides(tiny_data, **overrides), f"--workdir={workdir}")
    assert outcome.code == 0, outcome.err[-3000:]
    assert "no validation pass yet" in outcome.out
    summary = json.loads((workdir / "training.json").read_text())
    assert summary["best_val_loss"] is None
    outcome = run_cli("evaluate", f"--workdir={workdir}", "--noplots")
    assert_user_error(outcome, "no best checkpoint")
    assert not (workdir / "metrics.json").exists()
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1]
    assert math.isfinite(json.loads(lines[0])["train/step_loss"])
