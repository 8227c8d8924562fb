"""The `cradle-jax` command line (an absl app): `cradle-jax SUBCOMMAND --flags`.

User errors (bad input data, bad flags) print one line and exit with status 2; anything else is
a bug and keeps its traceback.
"""

import sys
from pathlib import Path

import jax
from absl import app, flags, logging

from cradle_jax.cli import evaluate, export, generate, inspect, prepare, simulate, sweep, train
from cradle_jax.data.errors import DataError
from cradle_jax.train.errors import RunError

SEED = flags.DEFINE_integer("seed", 0, "the one seed every random choice derives from")
OUT = flags.DEFINE_string("out", None, "output file")

SUBCOMMANDS = {
    "simulate": "write a simulated dataset with planted truth (--out FILE.h5ad)",
    "prepare": "map a paper's .h5ad onto the data contract (--adapter norman --in F --out F)",
    "inspect": "validate an .h5ad and print its summary (--data FILE.h5ad)",
    "train": "train an experiment (--config experiments/configs/NAME.py --workdir DIR)",
    "evaluate": "score a trained model: metrics.json and a report (--workdir DIR)",
    "generate": "artifact-free cells (--workdir DIR --perturbations 'A,B+C' --out cells.h5ad)",
    "export": "one file with the model, for evaluate/generate elsewhere (--workdir DIR --out F)",
    "sweep": "train and evaluate every run of a sweep (--sweep FILE --workdir DIR [--emit])",
    "aggregate": "a sweep's results table: results.csv and results.md (aggregate DIR)",
}
POSITIONAL = {"aggregate"}  # subcommands that take one positional argument (a folder)
USAGE = "usage: cradle-jax SUBCOMMAND [--flags]\n" + "".join(
    f"  {name:<10} {text}\n" for name, text in SUBCOMMANDS.items()
)


def main(argv: list[str]) -> None:
    command, *positional = argv[1:] or [""]
    if command not in SUBCOMMANDS or len(positional) > (command in POSITIONAL):
        sys.stderr.write(USAGE)
        sys.exit(2)
    try:
        if command == "simulate":
            if not OUT.value:
                raise flags.ValidationError("simulate needs --out FILE.h5ad")
            simulate.run(SEED.value, OUT.value)
        elif command == "prepare":
            prepare.run(OUT.value)
        elif command == "inspect":
            inspect.run(SEED.value)
        elif command == "train":
            train.run(SEED.value if flags.FLAGS["seed"].present else None)
        elif command == "evaluate":
            evaluate.run(OUT.value)
        elif command == "export":
            export.run(OUT.value)
        elif command == "generate":
            generate.run(SEED.value, OUT.value)
        elif command == "sweep":
            sweep.run()
        elif command == "aggregate":
            sweep.run_aggregate(positional[0] if positional else None)
    except (DataError, RunError, flags.ValidationError, OSError) as err:
        sys.stderr.write(f"cradle-jax {command}: error: {err}\n")
        sys.exit(2)


def run() -> None:
    """Console-script entry point; compiled XLA programs are cached on disk between runs."""
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update(
            "jax_compilation_cache_dir", str(Path.home() / ".cache" / "cradle_jax" / "xla")
        )
    logging.set_verbosity(logging.WARNING)
    app.run(main)
