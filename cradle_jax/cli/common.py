"""Flags more than one subcommand reads."""

import tempfile
from pathlib import Path

from absl import flags

WORKDIR = flags.DEFINE_string(
    "workdir", None, "run directory: train writes it; evaluate and generate read it"
)
N_CELLS = flags.DEFINE_integer(
    "n_cells",
    None,
    "simulate: number of cells (default 10000); generate, predict: cells per perturbation "
    "(default 100)",
)
EXPORT = flags.DEFINE_string(
    "export",
    None,
    "evaluate, generate, predict: read the model from this export instead of --workdir",
)


def check_out_file(out: str) -> None:
    """`--out` must name a file in an existing, writable folder; checked before the work, not
    after it (a file is created there and removed, which is what the write will need)."""
    path = Path(out)
    if path.is_dir():
        raise flags.ValidationError(f"--out: {path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise flags.ValidationError(f"--out: directory {path.parent} does not exist")
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        raise flags.ValidationError(
            f"--out: directory {path.parent} is not writable ({err.strerror})"
        ) from err
