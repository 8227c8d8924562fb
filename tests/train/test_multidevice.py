"""Data parallelism does not change what is trained: 1 device and 8 devices agree (SPEC A3)."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_eight_devices_train_the_same_parameters_as_one(sim_path, tmp_path):
    # 12 steps of 80-cell batches over 768 training cells: epoch 1 ends with a 48-cell batch
    # padded to 80 (10 per device), then validation, then two steps of epoch 2.
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-m", "tests.train.multidevice_run", str(sim_path), str(tmp_path), "12"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    difference = float(re.search(r"max parameter difference (\S+)", result.stdout).group(1))
    assert difference < 1e-5
