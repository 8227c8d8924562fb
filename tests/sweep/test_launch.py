"""A sweep run in this process, aggregated; and the command lines of --emit."""

import functools
import json
import shlex
import shutil
import statistics

import numpy as np
import pandas as pd
import pytest

from cradle_jax.cli.sweep import parse_set
from cradle_jax.config import load_config_file
from cradle_jax.sweep.aggregate import CSV_NAME, MARKDOWN_NAME, aggregate
from cradle_jax.sweep.launch import SWEEP_NAME, run_locally, write_sweep_json
from cradle_jax.sweep.spec import load_sweep
from tests.sweep.conftest import cradle_jax, set_flags, tiny_common, write_sweep_file


def split_commands(words: list[str]) -> list[list[str]]:
    """The commands of a shell line `a ... && b ... && c ...`, split into words."""
    commands = [[]]
    for word in words:
        if word == "&&":
            commands.append([])
        else:
            commands[-1].append(word)
    return commands


@pytest.fixture(scope="module")
def finished_sweep(sim_path, tmp_path_factory):
    """Two tiny runs (seeds 0 and 1) trained and evaluated in this process."""
    root = tmp_path_factory.mktemp("local_sweep")
    sweep = load_sweep(write_sweep_file(root, {"seed": [0, 1]}), tiny_common(sim_path))
    directory = root / "runs"
    write_sweep_json(sweep, directory)
    lines = []
    assert run_locally(sweep, directory, plots=False, say=lines.append) == {}
    return sweep, directory, lines


def test_every_run_is_trained_and_evaluated_in_its_own_folder(finished_sweep):
    sweep, directory, lines = finished_sweep
    assert [run.name for run in sweep.runs] == ["seed=0", "seed=1"]
    for run in sweep.runs:
        assert (directory / run.name / "metrics.json").is_file()
        assert (
            json.loads((directory / run.name / "config.json").read_text())["seed"]
            == run.config.seed
        )
    assert lines[-1].startswith("[2/2] seed=1: headline (all split): ATE_pearsonr")
    listed = json.loads((directory / SWEEP_NAME).read_text())
    assert [run["overrides"] for run in listed["runs"]] == [{"seed": 0}, {"seed": 1}]


def test_aggregate_is_the_mean_and_sd_of_the_runs_metrics(finished_sweep):
    _, directory, _ = finished_sweep
    results = aggregate(directory)
    metrics = [json.loads((directory / f"seed={s}" / "metrics.json").read_text()) for s in (0, 1)]
    csv = pd.read_csv(directory / CSV_NAME)
    baselines = ["baseline:additive", "baseline:control_mean"]
    assert list(csv["model.name"]) == ["cradle", "cradle", *baselines, *baselines]
    assert list(csv["seed"]) == [0, 1, 0, 0, 1, 1]
    for s, row in zip((0, 0, 1, 1), csv.iloc[2:].itertuples(), strict=True):
        name = row._2.removeprefix("baseline:")
        expected = metrics[s]["baselines"][name]["headline"]["ATE_r2"]
        assert row.ATE_r2 == pytest.approx(expected)
        assert np.isnan(row.qc_pass_rate_t3)  # a baseline generates no cells
    csv = csv.iloc[:2]
    markdown = (directory / MARKDOWN_NAME).read_text()
    assert markdown == results.markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| cradle |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == "2"  # runs in the row
    columns = [
        ("ATE_pearsonr", ("headline", "ATE_pearsonr")),
        ("ATE_r2", ("headline", "ATE_r2")),
        ("ATE_pearsonr_top20", ("headline", "ATE_pearsonr_top20")),
        ("jaccard_sim_top20", ("headline", "jaccard_sim_top20")),
        ("qc_pass_rate_t3", ("headline", "qc_pass_rate_t3")),
        ("mt_fail_t3", ("qc", "depth_matched", "fail_share", "t3", "qc_pct_counts_mt")),
        ("truth_ATE_pearsonr", ("truth", "truth_ATE_pearsonr")),
    ]
    assert results.table["model.name"].tolist() == ["cradle", *baselines]
    model_row = results.table.iloc[0]
    for cell, (column, path) in zip(cells[2:], columns, strict=True):
        values = [functools.reduce(dict.__getitem__, path, m) for m in metrics]
        assert list(csv[column]) == pytest.approx(values)
        assert model_row[f"{column}_mean"] == pytest.approx(statistics.mean(values))
        assert model_row[f"{column}_sd"] == pytest.approx(statistics.stdev(values))
        assert cell == f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"
    assert "Not finished" not in markdown


def test_a_second_launch_skips_finished_runs_and_a_failing_run_does_not_stop_the_sweep(
    finished_sweep, tmp_path
):
    sweep, directory, _ = finished_sweep
    stamps = {run.name: (directory / run.name / "metrics.json").stat() for run in sweep.runs}
    bad_data = sweep.common | {"data.perturbation_key": "no_such_column"}  # a DataError
    relaunch = load_sweep(write_sweep_file(tmp_path, {"seed": [0, 2, 1]}), bad_data)
    lines = []
    try:
        failures = run_locally(relaunch, directory, plots=False, say=lines.append)
    finally:
        shutil.rmtree(directory / "seed=2", ignore_errors=True)
    assert list(failures) == ["seed=2"]
    assert "no_such_column" in failures["seed=2"]
    assert lines[0] == "[1/3] seed=0: finished (metrics.json exists), skipped"
    assert lines[-1] == "[3/3] seed=1: finished (metrics.json exists), skipped"
    for name, stat in stamps.items():
        now = (directory / name / "metrics.json").stat()
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)


def test_aggregate_lists_the_runs_not_finished(finished_sweep, tmp_path):
    sweep, directory, _ = finished_sweep
    listing = load_sweep(write_sweep_file(tmp_path, {"seed": [0, 1, 3]}), sweep.common)
    write_sweep_json(listing, directory)
    try:
        results = aggregate(directory)
    finally:
        write_sweep_json(sweep, directory)
    assert results.unfinished["seed=3"] == "not started"
    assert "- seed=3: not started" in results.markdown
    assert results.runs["model.name"].tolist().count("cradle") == 2


def test_emit_prints_one_command_per_unfinished_run(sim_path, tmp_path):
    common = tiny_common(sim_path)
    path = write_sweep_file(tmp_path, {"seed": [0, 1, 2]})
    directory = tmp_path / "runs"
    (directory / "seed=1").mkdir(parents=True)
    (directory / "seed=1" / "metrics.json").write_text("{}")  # finished
    process = cradle_jax(
        "sweep", f"--sweep={path}", f"--workdir={directory}", "--emit", *set_flags(common)
    )
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "2 of 3 runs to go (1 finished)" in err
    sweep = load_sweep(path, common)
    base = load_config_file(sweep.base_config)
    seen = []
    for line in out.splitlines():
        cd, train, evaluate = split_commands(shlex.split(line))
        assert cd[0] == "cd"
        assert train[:3] == ["cradle-jax", "train", f"--config={sweep.base_config}"]
        workdir = train[-1].removeprefix("--workdir=")
        assert evaluate == ["cradle-jax", "evaluate", f"--workdir={workdir}"]
        run = next(r for r in sweep.runs if str(directory.absolute() / r.name) == workdir)
        # the --config.FIELD=VALUE flags give back the run's config
        flags = [word.removeprefix("--config.") for word in train[3:-1]]
        assert parse_set(flags, base) == common | run.overrides
        seen.append(run.name)
    assert seen == ["seed=0", "seed=2"]
    assert len(json.loads((directory / SWEEP_NAME).read_text())["runs"]) == 3


def test_the_aggregate_command_prints_the_table_it_writes(finished_sweep):
    _, directory, _ = finished_sweep
    process = cradle_jax("aggregate", str(directory))
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert (directory / MARKDOWN_NAME).read_text() in out
    assert "| cradle | 2 |" in out
