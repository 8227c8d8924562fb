"""kill -9 at random moments, then resume: the run ends with the uninterrupted parameters."""

import subprocess
import time
from pathlib import Path

import jax
import numpy as np

from tests.train.conftest import cli_overrides, saved_params, start_training


def wait_for_a_checkpoint(process: subprocess.Popen, workdir: Path) -> None:
    latest = workdir / "checkpoints" / "latest"
    while process.poll() is None and not any(p.name.isdigit() for p in latest.glob("*")):
        time.sleep(0.02)


def test_runs_killed_at_random_moments_resume_to_the_uninterrupted_parameters(
    sim_path, reference_run, tmp_path
):
    # A checkpoint every 3 steps, so kills land between checkpoints, during saves and during
    # validation; the moments are drawn after the first checkpoint exists (training under way).
    flags = cli_overrides(sim_path, **{"train.checkpoint_every_steps": 3})
    rng = np.random.default_rng(0)
    killed_while_running = 0
    for _ in range(2):
        process = start_training(flags, tmp_path)
        wait_for_a_checkpoint(process, tmp_path)
        time.sleep(rng.uniform(0.0, 1.5))
        if process.poll() is None:
            process.kill()
            killed_while_running += 1
        process.communicate(timeout=600)
    assert killed_while_running >= 1, "every kill came after the run had finished"
    final = start_training(flags, tmp_path)
    out, err = final.communicate(timeout=600)
    assert final.returncode == 0, err[-3000:]
    assert "resuming from step" in out
    resumed, uninterrupted = saved_params(tmp_path), saved_params(reference_run)
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(uninterrupted), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6)
