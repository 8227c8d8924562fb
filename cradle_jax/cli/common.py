"""Flags more than one subcommand reads."""

from absl import flags

WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "run directory: config, checkpoints, metrics (train writes it, evaluate reads it)",
)
