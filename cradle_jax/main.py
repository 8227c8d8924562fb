"""The `cradle-jax` command line (an absl app): `cradle-jax SUBCOMMAND --flags`.

User errors (bad input data, bad flags or config overrides) print one line and exit with status
2; anything else is a bug and keeps its traceback.
"""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import jax
from absl import app, flags, logging

from cradle_jax.cli import (
    evaluate,
    export,
    generate,
    inspect,
    predict,
    prepare,
    simulate,
    sweep,
    train,
)
from cradle_jax.cli.help import subcommand_help, wants_help
from cradle_jax.cli.setting_flags import message_for
from cradle_jax.data.errors import DataError
from cradle_jax.train.errors import RunError
from cradle_jax.xla_flags import tune_cpu_backend

SEED = flags.DEFINE_integer("seed", 0, "the one seed every random choice derives from")
OUT = flags.DEFINE_string("out", None, "output file")

SUBCOMMANDS = {
    "simulate": "write a simulated dataset with planted truth (--out FILE.h5ad)",
    "prepare": "map a paper's .h5ad onto the data contract (--adapter norman --in F --out F)",
    "inspect": "validate an .h5ad and print its summary (--data FILE.h5ad)",
    "train": "train an experiment (--config experiments/configs/NAME.py --workdir DIR)",
    "evaluate": "score a trained model: metrics.json and a report (--workdir DIR)",
    "generate": "artifact-free cells (--workdir DIR --perturbations 'A,B+C' --out cells.h5ad)",
    "predict": "prediction and real files for cell-eval (--export F --perturbations 'A,B+C' "
    "--real real.h5ad --out pred.h5ad --real_out real_ready.h5ad)",
    "export": "one file with the model, for evaluate/generate elsewhere (--workdir DIR --out F)",
    "sweep": "train and evaluate every run of a sweep (--sweep FILE --workdir DIR [--emit])",
    "aggregate": "a sweep's results table: results.csv and results.md (aggregate DIR)",
}
POSITIONAL = {"aggregate"}  # subcommands that take one positional argument (a folder)
USAGE = "usage: cradle-jax SUBCOMMAND [--flags]\n" + "".join(
    f"  {name:<10} {text}\n" for name, text in SUBCOMMANDS.items()
)


def _simulate(_: list[str]) -> None:
    if not OUT.value:
        raise flags.ValidationError("simulate needs --out FILE.h5ad")
    simulate.run(SEED.value, OUT.value)


def _train(_: list[str]) -> None:
    train.run(SEED.value if flags.FLAGS["seed"].present else None)  # else the config's seed


RUNNERS: dict[str, Callable[[list[str]], None]] = {
    "simulate": _simulate,
    "prepare": lambda _: prepare.run(OUT.value),
    "inspect": lambda _: inspect.run(SEED.value),
    "train": _train,
    "evaluate": lambda _: evaluate.run(OUT.value),
    "export": lambda _: export.run(OUT.value),
    "generate": lambda _: generate.run(SEED.value, OUT.value),
    "predict": lambda _: predict.run(SEED.value, OUT.value),
    "sweep": lambda _: sweep.run(),
    "aggregate": lambda positional: sweep.run_aggregate(positional[0] if positional else None),
}


def main(argv: list[str]) -> None:
    command, *positional = argv[1:] or [""]
    if command not in SUBCOMMANDS or len(positional) > (command in POSITIONAL):
        sys.stderr.write(USAGE)
        sys.exit(2)
    try:
        RUNNERS[command](positional)
    except DataError as err:
        _fail(command, message_for(command, err))
    except (RunError, flags.ValidationError, OSError) as err:
        _fail(command, str(err))


def _fail(command: str, message: str) -> NoReturn:
    """Print a user error as one line (a multi-line message is joined) and exit with status 2."""
    text = "; ".join(line.strip() for line in message.splitlines() if line.strip())
    sys.stderr.write(f"cradle-jax{' ' + command if command else ''}: error: {text}\n")
    sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
    """Parse the command line into FLAGS; a bad flag or config override is a user error.

    absl prints its parse errors over two lines with status 1, and an override of a config field
    that does not exist (`--config.model.n_latnt=3`) escapes ml_collections as a KeyError with a
    traceback; both become one line and status 2 like every other user error.
    """
    command = argv[1] if len(argv) > 1 and not argv[1].startswith("-") else ""
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        _fail(command, str(err))
    except (AttributeError, KeyError) as err:
        _fail(command, _unknown_field(err, argv))


def _unknown_field(err: Exception, argv: list[str]) -> str:
    """Name the override of a missing config field, with ml_collections' "did you mean"."""
    while isinstance(err, Exception) and err.args:  # AttributeError(KeyError(text))
        err = err.args[0]
    name, _, hint = str(err).partition("\n")
    name = name.strip("'\"")
    overrides = [a.split("=")[0] for a in argv if a.startswith("--config.")]
    named = [a for a in overrides if name in a.removeprefix("--config.").split(".")]
    where = named[0] if named else f"a --config override ({name!r})"
    return f"{where}: the config has no such field" + (f" ({hint.strip()})" if hint else "")


def run() -> None:
    """Console-script entry point; compiled XLA programs are cached on disk between runs, and
    the CPU backend gets the flags of `cradle_jax.xla_flags`."""
    tune_cpu_backend()
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update(
            "jax_compilation_cache_dir", str(Path.home() / ".cache" / "cradle_jax" / "xla")
        )
    logging.set_verbosity(logging.WARNING)
    if wants_help(sys.argv):
        print_help(sys.argv)
    app.run(main, flags_parser=parse_flags)


def print_help(argv: list[str]) -> NoReturn:
    """The help page of the subcommand named in `argv`, or the list of subcommands; exit 0."""
    command = next((arg for arg in argv[1:] if not arg.startswith("-")), "")
    if command in SUBCOMMANDS:
        sys.stdout.write(subcommand_help(command, SUBCOMMANDS[command]))
    else:
        sys.stdout.write(USAGE + "cradle-jax SUBCOMMAND --help: that subcommand's flags\n")
    sys.exit(0)
