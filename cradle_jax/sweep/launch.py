"""Run a sweep's runs one after another in this process, or print a shell command per run.

A run lives in `DIRECTORY/<run name>` and is finished when its metrics.json exists (written
last, atomically, by the evaluation). Launching again skips finished runs and resumes an
unfinished one from its checkpoints, so a killed sweep is finished by launching it again.
Runs share this process, so the compiled evaluation programs of one run serve the next.
"""

import shlex
from collections.abc import Callable
from pathlib import Path

from cradle_jax import atomic
from cradle_jax.data.errors import DataError
from cradle_jax.evaluate.report.run import METRICS_NAME
from cradle_jax.evaluate.report.text import report
from cradle_jax.evaluate.report.workdir import evaluate_workdir
from cradle_jax.sweep.spec import Sweep, SweepRun, value_text
from cradle_jax.train.errors import RunError
from cradle_jax.train.loop import train_and_evaluate

SWEEP_NAME = "sweep.json"
PROGRAM = "cradle-jax"


def _print_flushed(text: str) -> None:
    print(text, flush=True)  # at once, also into a batch job's log file


def is_finished(run_dir: Path) -> bool:
    """A run is finished once its evaluation has written metrics.json."""
    return (run_dir / METRICS_NAME).is_file()


def write_sweep_json(sweep: Sweep, directory: Path) -> Path:
    """DIRECTORY/sweep.json: the sweep file, the base config, --set values and the runs."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SWEEP_NAME
    atomic.write_json(path, sweep.to_json())
    return path


def run_locally(
    sweep: Sweep,
    directory: Path,
    *,
    plots: bool = True,
    say: Callable[[str], None] = _print_flushed,
) -> dict[str, str]:
    """Train and evaluate (with the plots, unless `plots` is False) every unfinished run in
    turn; return {run name: error} of the runs that failed with a DataError or RunError (the
    others still run). Other exceptions are bugs and stop the sweep."""
    failures = {}
    total = len(sweep.runs)
    for index, run in enumerate(sweep.runs, 1):
        run_dir = directory / run.name
        where = f"[{index}/{total}] {run.name}"
        if is_finished(run_dir):
            say(f"{where}: finished ({METRICS_NAME} exists), skipped")
            continue
        say(f"{where}: training in {run_dir}")
        try:
            train_and_evaluate(run.config, run_dir)
            result = evaluate_workdir(run_dir, plots=plots)
        except (DataError, RunError) as err:
            failures[run.name] = str(err)
            say(f"{where}: failed: {err}")
            continue
        say(f"{where}: {report(result.metrics).splitlines()[0]}")
    return failures


def run_command(sweep: Sweep, run: SweepRun, directory: Path, *, plots: bool = True) -> str:
    """One shell line that trains and evaluates `run` from the current directory, so relative
    paths in the config mean what they mean here: `cd HERE && train ... && evaluate ...`."""
    run_dir = (directory / run.name).absolute()
    overrides = {**sweep.common, **run.overrides}
    train = [
        PROGRAM,
        "train",
        f"--config={sweep.base_config}",
        *(f"--config.{key}={value_text(value)}" for key, value in overrides.items()),
        f"--workdir={run_dir}",
    ]
    evaluate = [PROGRAM, "evaluate", f"--workdir={run_dir}", *([] if plots else ["--noplots"])]
    return " && ".join(shlex.join(part) for part in (["cd", str(Path.cwd())], train, evaluate))


def unfinished_commands(sweep: Sweep, directory: Path, *, plots: bool = True) -> list[str]:
    """The command line of every run without metrics.json, in sweep order."""
    return [
        run_command(sweep, run, directory, plots=plots)
        for run in sweep.runs
        if not is_finished(directory / run.name)
    ]
