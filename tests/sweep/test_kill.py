"""kill -9 a sweep after its first run finished, launch it again: only the missing run trains."""

import time
from pathlib import Path

import numpy as np

from tests.sweep.conftest import cradle_jax, set_flags, tiny_common, write_sweep_file


def file_stamps(directory: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every file under `directory`, by relative path."""
    return {
        str(path.relative_to(directory)): (path.stat().st_ino, path.stat().st_mtime_ns)
        for path in directory.rglob("*")
        if path.is_file()
    }


def test_a_killed_sweep_launched_again_finishes_only_the_missing_runs(sim_path, tmp_path):
    path = write_sweep_file(tmp_path, {"seed": [0, 1]})
    directory = tmp_path / "runs"
    args = ["sweep", f"--sweep={path}", f"--workdir={directory}", "--noplots"]
    args += set_flags(tiny_common(sim_path))
    first, second = directory / "seed=0", directory / "seed=1"

    process = cradle_jax(*args)
    while process.poll() is None and not (second / "config.json").exists():
        time.sleep(0.05)  # the second run begins once the first one is finished
    time.sleep(np.random.default_rng(0).uniform(0.0, 2.0))
    killed = process.poll() is None
    process.kill()
    _, err = process.communicate(timeout=60)
    assert killed, f"the sweep ended before it was killed: {err[-2000:]}"
    assert (first / "metrics.json").is_file()
    assert not (second / "metrics.json").exists()
    finished = file_stamps(first)

    again = cradle_jax(*args)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    assert "[1/2] seed=0: finished (metrics.json exists), skipped" in out
    assert "[2/2] seed=1: training" in out
    assert file_stamps(first) == finished  # not retrained, not re-evaluated
    assert (second / "metrics.json").is_file()
