"""Tiny sweeps: two runs of the trainer tests' tiny config on a small simulated dataset.

The sweep file varies the run seed over experiments/configs/default.py; everything that makes a
run take seconds (the trainer tests' TINY fields, two epochs, a small evaluation) is passed as
the sweep's common overrides, as `--set` does on the command line.
"""

import os
import subprocess
import sys
from pathlib import Path

from tests.evaluate.conftest import SMALL_EVAL
from tests.train.conftest import CONFIGS, ROOT, TINY

SWEEP_FILE = """
from cradle_jax.sweep.grid import product


def get_sweep():
    return {base!r}, product({axes!r})
"""


def write_sweep_file(directory: Path, axes: dict, base: Path = CONFIGS / "default.py") -> Path:
    """A sweep file over `axes` ({"seed": [0, 1]}) in `directory`."""
    path = directory / "tiny_sweep.py"
    path.write_text(SWEEP_FILE.format(base=str(base), axes=axes))
    return path


def tiny_common(data_path: Path) -> dict:
    """The overrides every tiny run gets: seconds per run, training and evaluation."""
    return {
        "data.path": str(data_path),
        **TINY,
        "train.max_epochs": 2,
        **{f"eval.{name}": value for name, value in SMALL_EVAL.items()},
        "eval.qc_doublets": False,
    }


def set_flags(common: dict) -> list[str]:
    """`tiny_common` as `cradle-jax sweep --set` flags."""
    return [f"--set={key}={value}" for key, value in common.items()]


def cradle_jax(*args: str, **kwargs) -> subprocess.Popen:
    """`python -m cradle_jax ARGS` on one CPU device from the repository root, output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "cradle_jax", *args],
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )
