"""Twenty kill -9 at random moments of train → evaluate → export on the simulator.

The harness runs the pipeline once without interruption, then again in a second workdir where
each stage's process is killed at a moment drawn uniformly over that stage's uninterrupted
duration (so kills land during start-up, restore, steps, checkpoint saves, validation, scoring
and file writes) and simply relaunched; the printed log gives each kill's moment and the newest
checkpoint step at that moment. After every kill the stage's outputs must be absent or whole:
metrics.json parses and has every key, ate_tables.npz and the export load. At the end the
interrupted pipeline must reproduce the uninterrupted one: parameters to 1e-6, the export's
parameters to 1e-6 and every metric.

Slow (about four minutes on two cores): `make test-slow`.
"""

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np
import pytest

from cradle_jax.evaluate.report.export import load_export
from tests.train.conftest import ROOT, cli_overrides, saved_params

pytestmark = pytest.mark.slow

KILLS = {"train": 12, "evaluate": 5, "export": 3}  # 20 in all
TRAINING = {"train.max_epochs": 10, "train.checkpoint_every_steps": 3}
EVALUATION = ["--noplots", "--ate_particles=200", "--qc_cells=30"]


def stage_command(stage: str, data_path: Path, workdir: Path) -> list[str]:
    """The `cradle-jax` command line of one pipeline stage."""
    if stage == "train":
        args = [*cli_overrides(data_path, **TRAINING), f"--workdir={workdir}"]
    elif stage == "evaluate":
        args = [f"--workdir={workdir}", *EVALUATION]
    else:
        args = [f"--workdir={workdir}", f"--out={workdir / 'model.cradle'}"]
    return [sys.executable, "-m", "cradle_jax", stage, *args]


def start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_to_completion(command: list[str]) -> float:
    """Run one stage uninterrupted; its wall time in seconds."""
    began = time.monotonic()
    process = start(command)
    _, err = process.communicate(timeout=900)
    assert process.returncode == 0, err[-3000:]
    return time.monotonic() - began


@dataclass
class KillLog:
    """What the storm did: kills that hit a running process, and launches that finished first."""

    landed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KILLS, 0))
    finished_before_kill: int = 0
    moments: list[tuple[str, float, int | None]] = field(default_factory=list)


def latest_step(workdir: Path) -> int | None:
    """The step of the newest finished checkpoint, None before the first."""
    folders = (workdir / "checkpoints" / "latest").glob("*")
    steps = [int(p.name) for p in folders if p.name.isdigit()]
    return max(steps, default=None)


def check_outputs_whole(workdir: Path, metric_keys: set[str]) -> None:
    """Every result file present in `workdir` is complete (atomic writes: all or nothing)."""
    metrics = workdir / "metrics.json"
    if metrics.exists():
        assert set(json.loads(metrics.read_text())) == metric_keys
    tables = workdir / "ate_tables.npz"
    if tables.exists():
        with np.load(tables) as stored:
            assert stored.files
    export = workdir / "model.cradle"
    if export.exists():
        load_export(export)


def params_close(a: dict, b: dict) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-6)


def metrics_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, float) and isinstance(b[key], float):
            assert math.isclose(value, b[key], rel_tol=1e-5, abs_tol=1e-6), key
        else:
            assert value == b[key], key


def storm_training(command, workdir: Path, duration: float, rng, log: KillLog) -> bool:
    """Launch and kill one workdir's training until a launch finishes or the quota is met;
    True if the quota is met while this workdir's training is still unfinished."""
    while log.landed["train"] < KILLS["train"]:
        process = start(command)
        if not kill_at_random(process, "train", workdir, duration, rng, log):
            return False
    return True


def kill_at_random(
    process: subprocess.Popen, stage: str, workdir: Path, duration: float, rng, log: KillLog
) -> bool:
    """Kill `process` at a moment drawn uniformly over `duration`; True if it was still running.
    The log keeps the moment and the newest checkpoint step then (did it land mid-training?)."""
    moment = rng.uniform(0.0, duration)
    time.sleep(moment)
    landed = process.poll() is None
    if landed:
        process.kill()
        log.landed[stage] += 1
        log.moments.append((stage, round(moment, 2), latest_step(workdir)))
    else:
        log.finished_before_kill += 1
    _, err = process.communicate(timeout=900)
    assert process.returncode in (0, -9), err[-3000:]
    return landed


def test_twenty_kills_during_training_and_evaluation_change_nothing(sim_path, tmp_path):
    """Training resumes from checkpoints, so a workdir whose training finishes before the
    training quota is met is checked and the storm goes on in a fresh one (a round)."""
    reference = tmp_path / "uninterrupted"
    durations = {
        stage: run_to_completion(stage_command(stage, sim_path, reference)) for stage in KILLS
    }
    reference_metrics = json.loads((reference / "metrics.json").read_text())
    reference_params = saved_params(reference)

    rng = np.random.default_rng(0)
    log = KillLog()
    rounds = 0
    while True:
        rounds += 1
        stormed = tmp_path / f"killed{rounds}"
        command = stage_command("train", sim_path, stormed)
        quota_met = storm_training(command, stormed, durations["train"], rng, log)
        if quota_met:
            run_to_completion(command)
        params_close(saved_params(stormed), reference_params)
        if quota_met:
            break

    for stage in ("evaluate", "export"):
        command = stage_command(stage, sim_path, stormed)
        while log.landed[stage] < KILLS[stage]:
            kill_at_random(start(command), stage, stormed, durations[stage], rng, log)
            check_outputs_whole(stormed, set(reference_metrics))
        run_to_completion(command)
        check_outputs_whole(stormed, set(reference_metrics))

    leftovers = sorted(p.name for p in stormed.glob(".*") if p.is_file())
    print(
        f"uninterrupted stage seconds { {k: round(v, 1) for k, v in durations.items()} }; "
        f"kills landed {log.landed} (total {sum(log.landed.values())}) over {rounds} training "
        f"rounds; launches that finished before their kill {log.finished_before_kill}; "
        f"moments {log.moments}; leftover temporary files {leftovers}"
    )
    assert sum(log.landed.values()) == 20
    metrics_equal(json.loads((stormed / "metrics.json").read_text()), reference_metrics)
    exported, original = (load_export(d / "model.cradle") for d in (stormed, reference))
    params_close(exported[0].params, original[0].params)
