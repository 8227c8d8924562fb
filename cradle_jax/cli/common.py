"""Flags more than one subcommand reads."""

from absl import flags

WORKDIR = flags.DEFINE_string(
    "workdir", None, "run directory: train writes it; evaluate and generate read it"
)
N_CELLS = flags.DEFINE_integer(
    "n_cells",
    None,
    "simulate: number of cells (default 10000); generate: cells per perturbation (default 100)",
)
EXPORT = flags.DEFINE_string(
    "export", None, "evaluate, generate: read the model from this export instead of --workdir"
)
