"""A valid tiny dataset, a run trained on it and its export, shared by the reliability tests."""

import os
import stat
from pathlib import Path

import pytest

from tests.reliability.builders import FAST, tiny_adata, write
from tests.reliability.harness import run_cli
from tests.train.conftest import cli_overrides


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return write(tiny_adata(), tmp_path_factory.mktemp("data") / "tiny.h5ad")


@pytest.fixture(scope="session")
def trained_run(tiny_data, tmp_path_factory) -> Path:
    """A CRADLE workdir after one short epoch: a best checkpoint exists."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    outcome = run_cli("train", *cli_overrides(tiny_data, **FAST), f"--workdir={workdir}")
    assert outcome.code == 0, outcome.err
    return workdir


@pytest.fixture(scope="session")
def exported(trained_run, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("export") / "model.cradle"
    outcome = run_cli("export", f"--workdir={trained_run}", f"--out={path}")
    assert outcome.code == 0, outcome.err
    return path


@pytest.fixture
def read_only_dir(tmp_path) -> Path:
    """A folder nothing can be written in. Root writes through file modes, so for root it is
    /sys (sysfs refuses new files whatever the mode)."""
    if os.geteuid() == 0:
        yield Path("/sys")
        return
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    yield folder
    folder.chmod(stat.S_IRWXU)
