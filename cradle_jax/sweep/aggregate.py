"""Collect a sweep's finished runs into results.csv (one row per run) and results.md (a table of
mean ± sd over seeds per model and setting).

A run is a folder `DIRECTORY/NAME` with config.json; it is finished when metrics.json is there
too. The setting columns are the fields the sweep overrides (from sweep.json) and any field
whose value differs between runs' config.json files, so a folder of runs made by hand
aggregates as well. `seed` and `data.split_seed` are the seeds averaged over; every other
setting, and the model name, tells the rows apart. Runs of sweep.json without metrics.json are
listed under the table, never dropped in silence.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cradle_jax import atomic
from cradle_jax.evaluate.report.run import METRICS_NAME
from cradle_jax.sweep.launch import SWEEP_NAME
from cradle_jax.train.errors import RunError
from cradle_jax.train.workdir import CONFIG_NAME

CSV_NAME = "results.csv"
MARKDOWN_NAME = "results.md"
SEED_FIELDS = ("seed", "data.split_seed")
MODEL_FIELD = "model.name"
# (column of results.csv, where in metrics.json, title in results.md); the headline row
# (docs/metrics.md#headline: on the test split for combination splits, on all cells for random
# ones), the shares of the headline's generated cells (at the real cells' depth) failing the
# mitochondrial criterion (the damaged-cell artifact) and the doublet call, and the agreement
# with the simulator's planted truth.
METRICS = (
    ("ATE_pearsonr", ("headline", "ATE_pearsonr"), "ATE-ρ"),
    ("ATE_r2", ("headline", "ATE_r2"), "ATE-R²"),
    ("ATE_pearsonr_top20", ("headline", "ATE_pearsonr_top20"), "ATE-ρ top-20"),
    ("jaccard_sim_top20", ("headline", "jaccard_sim_top20"), "Jaccard@20"),
    ("qc_pass_rate_t3", ("headline", "qc_pass_rate_t3"), "QC pass t=3"),
    (
        "mt_fail_t3",
        ("qc", "depth_matched", "fail_share", "t3", "qc_pct_counts_mt"),
        "mt% fail t=3",
    ),
    (
        "doublet_fail_t3",
        ("qc", "depth_matched", "fail_share", "t3", "qc_predicted_doublet"),
        "doublet fail t=3",
    ),
    ("truth_ATE_pearsonr", ("truth", "truth_ATE_pearsonr"), "truth ATE-ρ"),
    ("test_iwelbo", ("test_iwelbo",), None),
)


@dataclass(frozen=True)
class Results:
    """One row per finished run, the summary table, and the runs not finished."""

    runs: pd.DataFrame
    table: pd.DataFrame
    unfinished: dict[str, str]  # run name → "unfinished" (started) or "not started"
    markdown: str


def _lookup(metrics: dict, path: tuple[str, ...]) -> float:
    value = metrics
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return np.nan
        value = value[key]
    return np.nan if value is None else float(value)


def _read_runs(directory: Path) -> tuple[dict[str, dict], dict[str, dict], list[str]]:
    """The flattened config.json and the metrics of every run folder, in sweep.json's order
    (then by name); runs of sweep.json without a folder get an empty config. Also the
    override keys of sweep.json."""
    sweep_path = directory / SWEEP_NAME
    sweep = json.loads(sweep_path.read_text()) if sweep_path.is_file() else {"runs": []}
    keys = list(dict.fromkeys(key for run in sweep["runs"] for key in run["overrides"]))
    configs = {run["name"]: {} for run in sweep["runs"]}
    metrics = {}
    for config_path in sorted(directory.glob(f"*/{CONFIG_NAME}")):
        name = config_path.parent.name
        config = json.loads(config_path.read_text())
        configs[name] = pd.json_normalize(config, sep=".").iloc[0].to_dict()
        metrics_path = config_path.parent / METRICS_NAME
        if metrics_path.is_file():
            metrics[name] = json.loads(metrics_path.read_text())
    return configs, metrics, keys


def _setting_fields(configs: dict[str, dict], sweep_keys: list[str]) -> list[str]:
    """The sweep's override keys, then the other fields that differ between runs."""
    present = [c for c in configs.values() if c]
    fields = sorted({key for config in present for key in config})
    varying = [f for f in fields if len({json.dumps(c.get(f)) for c in present}) > 1]
    return [k for k in dict.fromkeys([*sweep_keys, *varying]) if k != MODEL_FIELD]


def _run_table(configs: dict, metrics: dict, settings: list[str]) -> pd.DataFrame:
    """A row per finished run, and a row per non-learned baseline it reports (model
    `baseline:NAME`, its ATE metrics only); a baseline's rows that several models report for
    the same data and seed are one row."""
    rows = []
    for name in [name for name in configs if name in metrics]:
        config, run_metrics = configs[name], metrics[name]
        row = {"run": name, MODEL_FIELD: config.get(MODEL_FIELD)}
        row |= {key: config.get(key) for key in settings}
        row["split"] = run_metrics.get("headline", {}).get("split")
        rows.append(row | {column: _lookup(run_metrics, path) for column, path, _ in METRICS})
        for baseline, scores in run_metrics.get("baselines", {}).items():
            values = {column: _lookup(scores, path) for column, path, _ in METRICS}
            rows.append(
                row | values | {"run": f"{name} ({baseline})", MODEL_FIELD: f"baseline:{baseline}"}
            )
    runs = pd.DataFrame(rows)
    if runs.empty:
        return runs
    keys = [key for key in runs.columns if key != "run"]
    runs = runs[~runs[keys].astype(str).duplicated()]
    baseline = runs[MODEL_FIELD].astype(str).str.startswith("baseline:")
    return pd.concat([runs[~baseline], runs[baseline]], ignore_index=True)


def _summary(runs: pd.DataFrame, settings: list[str]) -> pd.DataFrame:
    """Per model and non-seed setting, in order of first appearance: the number of runs `n`
    and each metric's mean and sample sd (ddof 1; none for one run) as `NAME_mean`,
    `NAME_sd`. A null metric (non-finite in metrics.json) is left out of its mean."""
    groups = [MODEL_FIELD, *(key for key in settings if key not in SEED_FIELDS)]
    columns = [column for column, _, title in METRICS if title and runs[column].notna().any()]
    keyed = runs.assign(**{key: runs[key].map(json.dumps) for key in groups})
    rows = []
    for values, group in keyed.groupby(groups, sort=False):
        row = {key: json.loads(value) for key, value in zip(groups, values, strict=True)}
        row["n"] = len(group)
        for column in columns:
            row[f"{column}_mean"] = group[column].mean()
            row[f"{column}_sd"] = group[column].std()
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(mean: float, sd: float) -> str:
    if np.isnan(mean):
        return "—"
    return f"{mean:.3f}" if np.isnan(sd) else f"{mean:.3f} ± {sd:.3f}"


def _markdown(table: pd.DataFrame, runs: pd.DataFrame, unfinished: dict, directory: Path) -> str:
    groups = list(table.columns[: table.columns.get_loc("n")])
    metrics = [(column, title) for column, _, title in METRICS if f"{column}_mean" in table]
    seeds = [key for key in SEED_FIELDS if key in runs.columns]
    splits = ", ".join(sorted({str(split) for split in runs["split"]}))
    header = ["model" if key == MODEL_FIELD else key for key in groups]
    header += ["n", *(title for _, title in metrics)]
    lines = [
        f"Sweep {directory}: {len(runs)} finished runs; mean ± sd over "
        f"{', '.join(seeds) or 'runs'} (headline split: {splits}).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for _, row in table.iterrows():
        cells = [str(row[key]) for key in groups] + [str(row["n"])]
        cells += [_cell(row[f"{column}_mean"], row[f"{column}_sd"]) for column, _ in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    if unfinished:
        lines += ["", f"Not finished ({len(unfinished)}):"]
        lines += [f"- {name}: {state}" for name, state in unfinished.items()]
    return "\n".join(lines) + "\n"


def aggregate(directory: str | Path) -> Results:
    """Read DIRECTORY's runs and write results.csv and results.md there, each atomically."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RunError(f"sweep directory {directory} not found")
    configs, metrics, sweep_keys = _read_runs(directory)
    unfinished = {
        name: "unfinished" if config else "not started"
        for name, config in configs.items()
        if name not in metrics
    }
    if not metrics:
        raise RunError(f"{directory} holds no finished run (no */{METRICS_NAME})")
    settings = _setting_fields(configs, sweep_keys)
    runs = _run_table(configs, metrics, settings)
    table = _summary(runs, settings)
    text = _markdown(table, runs, unfinished, directory)
    with atomic.replacing(directory / CSV_NAME) as tmp:
        runs.to_csv(tmp, index=False)
    atomic.write_text(directory / MARKDOWN_NAME, text)
    return Results(runs=runs, table=table, unfinished=unfinished, markdown=text)
