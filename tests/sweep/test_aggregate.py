"""results.csv and results.md from run folders made by hand: grouping, seeds, gaps."""

import json
import statistics

import pytest

from cradle_jax.config import default_config
from cradle_jax.sweep.aggregate import aggregate
from cradle_jax.sweep.launch import SWEEP_NAME


def make_run(directory, name, overrides, headline=None):
    """A run folder with config.json and, given a headline, metrics.json."""
    config = default_config()
    for key, value in overrides.items():
        section, field = key.split(".")
        config[section][field] = value
    (directory / name).mkdir(parents=True)
    (directory / name / "config.json").write_text(config.to_json())
    if headline is not None:
        metrics = {"headline": {"split": "test", **headline}, "test_iwelbo": -100.0}
        (directory / name / "metrics.json").write_text(json.dumps(metrics))


def headline(rho):
    return {"ATE_pearsonr": rho, "ATE_r2": rho / 2, "ATE_pearsonr_top20": None,
            "jaccard_sim_top20": 0.5, "qc_pass_rate_t3": 0.9}  # fmt: skip


@pytest.fixture
def sweep_dir(tmp_path):
    """t in {3, 4} x split seed {0, 1, 2}; t=4, seed 2 unfinished; one run never started."""
    rho = {(3, 0): 0.5, (3, 1): 0.7, (3, 2): 0.6, (4, 0): 0.2, (4, 1): 0.4}
    runs = []
    for t in (3, 4):
        for seed in (0, 1, 2):
            overrides = {"data.qc_threshold": t, "data.split_seed": seed}
            name = f"t={t},s={seed}"
            value = rho.get((t, seed))
            make_run(tmp_path, name, overrides, None if value is None else headline(value))
            runs.append({"name": name, "overrides": overrides})
    runs.append({"name": "t=5,s=0", "overrides": {"data.qc_threshold": 5, "data.split_seed": 0}})
    (tmp_path / SWEEP_NAME).write_text(json.dumps({"runs": runs}))
    return tmp_path, rho


def test_rows_group_the_settings_and_average_over_split_seeds(sweep_dir):
    directory, rho = sweep_dir
    results = aggregate(directory)
    assert list(results.runs["run"]) == ["t=3,s=0", "t=3,s=1", "t=3,s=2", "t=4,s=0", "t=4,s=1"]
    table = results.table.set_index("data.qc_threshold")
    assert table.loc[3, "n"] == 3
    assert table.loc[4, "n"] == 2
    for t in (3, 4):
        values = [v for (tt, _), v in rho.items() if tt == t]
        assert table.loc[t, "ATE_pearsonr_mean"] == pytest.approx(statistics.mean(values))
        assert table.loc[t, "ATE_pearsonr_sd"] == pytest.approx(statistics.stdev(values))
    lines = results.markdown.splitlines()
    assert "mean ± sd over data.split_seed (headline split: test)" in lines[0]
    assert lines[2] == (
        "| model | data.qc_threshold | n | ATE-ρ | ATE-R² | Jaccard@20 | QC pass t=3 |"
    )  # no column for metrics no run has (top-20 ρ here, the planted truth)
    assert (
        lines[4]
        == "| cradle | 3 | 3 | 0.600 ± 0.100 | 0.300 ± 0.050 | 0.500 ± 0.000 | 0.900 ± 0.000 |"
    )


def test_runs_not_finished_are_listed(sweep_dir):
    directory, _ = sweep_dir
    results = aggregate(directory)
    assert results.unfinished == {"t=4,s=2": "unfinished", "t=5,s=0": "not started"}
    assert results.markdown.endswith(
        "Not finished (2):\n- t=4,s=2: unfinished\n- t=5,s=0: not started\n"
    )
    csv = (directory / "results.csv").read_text().splitlines()
    assert csv[0].startswith("run,model.name,data.qc_threshold,data.split_seed,split,ATE_pearsonr")
    assert len(csv) == 6
