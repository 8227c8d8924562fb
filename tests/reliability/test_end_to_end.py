"""A few malformed inputs through the real console entry point in a new process: exit status 2,
one line on stderr and no traceback, with the flag parser, a data error and a run error."""

import json

import numpy as np

from tests.reliability.builders import tiny_adata, write
from tests.reliability.harness import run_subprocess, snapshot
from tests.train.conftest import cli_overrides


def assert_one_line_error(outcome, fragment: str) -> None:
    assert outcome.code == 2, outcome.err[-3000:]
    lines = outcome.err.strip().splitlines()
    assert len(lines) == 1, outcome.err
    assert lines[0].startswith("cradle-jax"), lines[0]
    assert fragment in lines[0], lines[0]


def test_unknown_config_field(tiny_data, tmp_path):
    flags = cli_overrides(tiny_data, **{"model.n_latnt": 3})
    outcome = run_subprocess("train", *flags, f"--workdir={tmp_path / 'run'}")
    assert_one_line_error(outcome, "--config.model.n_latnt: the config has no such field")
    assert snapshot(tmp_path) == {}


def test_truncated_data_file(tmp_path):
    data = write(tiny_adata(10), tmp_path / "data.h5ad")
    data.write_bytes(data.read_bytes()[:4096])
    before = snapshot(tmp_path)
    outcome = run_subprocess("train", *cli_overrides(data), f"--workdir={tmp_path / 'run'}")
    assert_one_line_error(outcome, "damaged")
    assert snapshot(tmp_path) == before


def test_export_from_a_newer_format(exported, tmp_path):
    with np.load(exported) as stored:
        arrays = {name: stored[name] for name in stored.files}
    meta = json.loads(str(arrays.pop("meta")))
    meta["format_version"] += 1
    newer = tmp_path / "newer.cradle"
    with open(newer, "wb") as handle:
        np.savez(handle, **arrays, meta=np.array(json.dumps(meta)))
    before = snapshot(tmp_path)
    outcome = run_subprocess("evaluate", f"--export={newer}", f"--out={tmp_path / 'results'}")
    assert_one_line_error(outcome, "upgrade cradle-jax")
    assert snapshot(tmp_path) == before
