"""Data parallelism does not change what is trained or generated: 1 device and 8 agree
(docs/method.md#data-parallelism)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def eight_device_run(sim_path, tmp_path_factory) -> str:
    """The stdout of tests.train.multidevice_run: training, then generation, on 1 and 8 devices."""
    tmp_path = tmp_path_factory.mktemp("multidevice")
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
    return result.stdout


def figure(output: str, name: str) -> float:
    return float(re.search(rf"{name} (\S+)", output).group(1))


def test_eight_devices_train_the_same_parameters_as_one(eight_device_run):
    assert figure(eight_device_run, "max parameter difference") < 1e-5


def test_eight_devices_fed_from_the_host_train_the_parameters_of_one_fed_on_device(
    eight_device_run,
):
    assert figure(eight_device_run, "max parameter difference host") < 1e-5


def test_eight_devices_generate_the_same_cells_in_the_same_order_as_one(eight_device_run):
    # Chunk c draws from fold_in(key, c) on any mesh, so the counts are those of one device; a
    # sampled count may flip where a rate differs in its last float bits.
    assert figure(eight_device_run, "generated counts that differ") < 1e-3
    assert figure(eight_device_run, "max ATE difference") < 1e-4
