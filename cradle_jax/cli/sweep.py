"""`cradle-jax sweep` and `cradle-jax aggregate`: run every run of a sweep file, tabulate them.

    cradle-jax sweep --sweep experiments/sweeps/norman.py --set data.path=norman.h5ad \
        --workdir runs/norman_sweep [--emit]
    cradle-jax aggregate runs/norman_sweep

A run that fails with a user error (bad data, a config or workdir that cannot be used) is
reported and the sweep goes on with the next one; the command then exits with status 2
naming the failed runs. Launching again retries them and skips the finished ones.
"""

import sys
from pathlib import Path

import ml_collections
from absl import flags

from cradle_jax.cli.common import WORKDIR
from cradle_jax.cli.evaluate import PLOTS
from cradle_jax.config import load_config_file
from cradle_jax.sweep.aggregate import CSV_NAME, MARKDOWN_NAME, aggregate
from cradle_jax.sweep.launch import run_locally, unfinished_commands, write_sweep_json
from cradle_jax.sweep.spec import SweepError, field_value, load_sweep, read_sweep_file
from cradle_jax.train.errors import RunError

SWEEP = flags.DEFINE_string("sweep", None, "sweep: the sweep file (experiments/sweeps/NAME.py)")
SET = flags.DEFINE_multi_string(
    "set", [], "sweep: FIELD=VALUE for every run, e.g. --set data.path=norman.h5ad (repeatable; "
    "read as --config.FIELD=VALUE is)"
)  # fmt: skip
EMIT = flags.DEFINE_bool(
    "emit", False, "sweep: print one shell command per unfinished run instead of running them"
)

# The parsers ml_collections' config flags use for fields of these types.
PARSERS = {
    bool: flags.BooleanParser(),
    int: flags.IntegerParser(),
    float: flags.FloatParser(),
    str: flags.ArgumentParser(),
}


def parse_set(texts: list[str], base: ml_collections.ConfigDict) -> dict[str, object]:
    """`--set FIELD=VALUE` texts as typed overrides, each parsed by its field's type in `base`."""
    values = {}
    for text in texts:
        key, equals, raw = text.partition("=")
        if not equals:
            raise flags.ValidationError(f"--set {text!r}: expected FIELD=VALUE")
        try:
            current = field_value(base, key)
        except SweepError as err:
            raise SweepError(f"--set {err}") from err
        try:
            # an unset text field (data.qc_columns) holds None until given a value
            values[key] = PARSERS[str if current is None else type(current)].parse(raw)
        except (KeyError, ValueError) as err:
            kind = {bool: "true or false", int: "an int", float: "a number"}.get(type(current))
            raise flags.ValidationError(f"--set {key}={raw}: expected {kind}") from err
    return values


def run() -> None:
    """Write DIR/sweep.json, then run the unfinished runs here or (--emit) print them."""
    if not SWEEP.value:
        raise flags.ValidationError("sweep needs --sweep experiments/sweeps/NAME.py")
    if not WORKDIR.value:
        raise flags.ValidationError("sweep needs --workdir DIR (a folder per run goes inside)")
    if flags.FLAGS["seed"].present:
        raise flags.ValidationError("sweep: seeds come from the sweep file, or --set seed=N")
    base_path, _ = read_sweep_file(SWEEP.value)
    common = parse_set(SET.value, load_config_file(base_path))
    sweep = load_sweep(SWEEP.value, common)
    directory = Path(WORKDIR.value)
    write_sweep_json(sweep, directory)
    if EMIT.value:
        commands = unfinished_commands(sweep, directory, plots=PLOTS.value)
        for command in commands:
            print(command)
        done = len(sweep.runs) - len(commands)
        sys.stderr.write(f"{len(commands)} of {len(sweep.runs)} runs to go ({done} finished)\n")
        return
    failures = run_locally(sweep, directory, plots=PLOTS.value)
    if failures:
        raise RunError(
            f"{len(failures)} of {len(sweep.runs)} runs failed: {', '.join(failures)} (the "
            f"errors are above); launch the sweep again to retry them"
        )
    print(f"all {len(sweep.runs)} runs finished; tabulate them: cradle-jax aggregate {directory}")


def run_aggregate(directory: str | None) -> None:
    """results.csv and results.md in the sweep folder; the table is printed too."""
    directory = directory or WORKDIR.value
    if not directory:
        raise flags.ValidationError("aggregate needs the sweep folder: aggregate DIR")
    results = aggregate(directory)
    print(results.markdown, end="")
    print(f"wrote {Path(directory) / CSV_NAME} and {Path(directory) / MARKDOWN_NAME}")
