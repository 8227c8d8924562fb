"""`cradle-jax SUBCOMMAND --help`: what the subcommand does, its flags with defaults, an example.

absl's own `--help` knows nothing of subcommands: it prints the usage line and exits 1, and
`--helpfull` lists every flag of every library. This page lists only the flags the subcommand
reads: those its module defines and the shared ones (`--seed`, `--out`, `--workdir`, ...).
"""

import importlib
import textwrap

from absl import flags

HELP_FLAGS = ("--help", "-h", "--help=true", "-help")

# Subcommand → (module defining its flags, the shared flags it reads, an example command).
PAGES: dict[str, tuple[str | None, tuple[str, ...], str]] = {
    "simulate": (
        "simulate",
        ("seed", "out", "n_cells"),
        "cradle-jax simulate --n_cells 20000 --n_genes 1000 --n_perturbations 20 --n_pairs 10 "
        "--seed 0 --out data.h5ad",
    ),
    "prepare": (
        "prepare",
        ("out",),
        "cradle-jax prepare --adapter norman --in norman.h5ad --out ready.h5ad",
    ),
    "inspect": ("inspect", ("seed",), "cradle-jax inspect --data data.h5ad --split combinations"),
    "train": (
        "train",
        ("seed", "workdir"),
        "cradle-jax train --config experiments/configs/synthetic.py "
        "--config.data.path=data.h5ad --workdir runs/demo",
    ),
    "evaluate": (
        "evaluate",
        ("workdir", "export", "out"),
        "cradle-jax evaluate --workdir runs/demo",
    ),
    "export": (
        "export",
        ("workdir", "out"),
        "cradle-jax export --workdir runs/demo --out demo.cradle",
    ),
    "generate": (
        "generate",
        ("seed", "workdir", "export", "n_cells", "out"),
        'cradle-jax generate --workdir runs/demo --perturbations "PERT01,PERT01+PERT02" '
        "--n_cells 500 --out cells.h5ad",
    ),
    "predict": (
        "predict",
        ("perturbations", "library", "seed", "workdir", "export", "n_cells", "out"),
        'cradle-jax predict --export demo.cradle --perturbations "PERT01,PERT01+PERT02" '
        "--real data.h5ad --out pred.h5ad --real_out real_ready.h5ad",
    ),
    "sweep": (
        "sweep",
        ("plots", "workdir"),
        "cradle-jax sweep --sweep experiments/sweeps/simulator_models.py --workdir runs/models",
    ),
    "aggregate": (None, (), "cradle-jax aggregate runs/models"),
}


def wants_help(argv: list[str]) -> bool:
    """True when the command line asks for help (`--help`, `-h`) rather than for work."""
    return any(arg in HELP_FLAGS for arg in argv[1:])


def subcommand_help(command: str, purpose: str) -> str:
    """The help page of `command` (a key of PAGES); `purpose` is its line of the usage table."""
    module_name, shared, example = PAGES[command]
    own = []
    if module_name is not None:
        module = importlib.import_module(f"cradle_jax.cli.{module_name}")
        own = flags.FLAGS.get_flags_for_module(module.__name__)
    listed = sorted(own, key=lambda flag: flag.name) + [flags.FLAGS[name] for name in shared]
    lines = [f"usage: cradle-jax {command} [--flags]", "", f"  {purpose}", ""]
    if command == "aggregate":
        lines += ["argument:", "  DIR  the sweep's workdir", ""]
    if listed:
        lines.append("flags:")
        for flag in listed:
            lines.append(f"  --{flag.name} (default: {_default(flag)})")
            lines += textwrap.wrap(
                flag.help, 92, initial_indent="      ", subsequent_indent="      "
            )
        lines.append("")
    lines += ["example:", f"  {example}", ""]
    lines.append("Every flag of every library: --helpfull")
    return "\n".join(lines) + "\n"


def _default(flag: flags.Flag) -> str:
    if flag.default is None:
        return "none"
    if flag.name == "config":  # a config file flag: its default is a parsed config
        return "none"
    return flag.default_as_str or repr(flag.default)
