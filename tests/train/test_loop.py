"""The training loop in one process: run directory, resume, early stopping, refusals."""

import json
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from cradle_jax.train.errors import RunError
from cradle_jax.train.loop import train_and_evaluate
from cradle_jax.train.mesh import check_batch_size
from tests.train.conftest import saved_params, tiny_config


def max_difference(a: dict, b: dict) -> float:
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@pytest.fixture(scope="module")
def finished_run(sim_path, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    config = tiny_config(sim_path, **{"train.iwelbo_particles": 8})
    return workdir, config, train_and_evaluate(config, workdir)


def test_run_directory_holds_config_metrics_checkpoints_and_summary(finished_run):
    workdir, config, summary = finished_run
    assert json.loads((workdir / "config.json").read_text()) == json.loads(config.to_json())
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "epoch" in r]
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    n_batches = -(-summary["cells"]["train"] // config.train.batch_size)
    assert summary["cells"]["train"] % config.train.batch_size, "the last batch should be padded"
    assert [r["step"] for r in epochs] == [n_batches, 2 * n_batches, 3 * n_batches]
    assert epochs[-1]["val/loss"] < epochs[0]["val/loss"]
    assert {"train/loss_term_reconstruction", "val/counterfactual_kl"} <= set(epochs[0])
    logged = [r["step"] for r in records if "train/step_loss" in r]
    assert logged == list(range(5, 3 * n_batches + 1, 5))
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    assert (workdir / "checkpoints" / "best").is_dir()
    assert summary == json.loads((workdir / "training.json").read_text())
    assert summary["steps"] == 3 * n_batches
    assert summary["stop_reason"] == "max_epochs"
    assert summary["best_val_loss"] == min(r["val/loss"] for r in epochs)
    assert np.isfinite(summary["val_iwelbo"])
    assert summary["val_iwelbo"] < 0


def test_each_epoch_logs_the_share_of_its_time_spent_waiting_for_input(finished_run):
    workdir, _, _ = finished_run
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    epoch_steps = [r["step"] for r in records if "epoch" in r]
    waits = [r for r in records if "train/input_wait_share" in r]
    assert [r["step"] for r in waits] == epoch_steps
    assert all(0 <= r["train/input_wait_share"] < 1 for r in waits)


def test_a_run_stopped_mid_epoch_and_resumed_ends_where_an_uninterrupted_one_does(
    finished_run, sim_path, tmp_path
):
    workdir, _, summary = finished_run
    first = train_and_evaluate(tiny_config(sim_path, **{"train.max_steps": 13}), tmp_path)
    assert first["stop_reason"] == "max_steps"
    assert first["steps"] == 13
    second = train_and_evaluate(tiny_config(sim_path), tmp_path)
    assert second["steps"] == summary["steps"]
    assert max_difference(saved_params(tmp_path), saved_params(workdir)) == 0.0
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines]
    assert steps == sorted(steps), "a replayed step was logged twice"
    assert [json.loads(line) for line in lines if '"epoch"' in line] == [
        json.loads(line)
        for line in (workdir / "metrics.jsonl").read_text().splitlines()
        if '"epoch"' in line
    ]


def test_a_finished_run_is_not_trained_again_unless_its_limit_is_raised(finished_run):
    workdir, config, summary = finished_run
    assert train_and_evaluate(config, workdir) == summary
    longer = tiny_config(config.data.path, **{"train.max_epochs": 4, "train.iwelbo_particles": 8})
    assert train_and_evaluate(longer, workdir)["steps"] == summary["steps"] // 3 * 4


def test_early_stopping_ends_a_run_that_stops_improving(sim_path, tmp_path):
    config = tiny_config(
        sim_path, **{"train.learning_rate": 0.0, "train.patience": 1, "train.max_epochs": 30}
    )
    summary = train_and_evaluate(config, tmp_path)
    assert summary["stop_reason"] == "early_stopping"
    assert summary["epochs"] < 30
    assert summary["epochs"] == summary["best_epoch"] + 1


def test_resuming_with_another_model_shape_is_refused_naming_the_field(finished_run):
    workdir, config, _ = finished_run
    changed = tiny_config(config.data.path, **{"model.n_latent": 6})
    with pytest.raises(RunError, match=r"model\.n_latent was 4, now 6"):
        train_and_evaluate(changed, workdir)


def test_a_batch_size_that_does_not_divide_by_the_devices_is_refused():
    two_devices = SimpleNamespace(size=2)
    check_batch_size(96, two_devices)
    with pytest.raises(ValueError, match="97 does not divide by the 2 devices"):
        check_batch_size(97, two_devices)


def test_a_half_written_checkpoint_is_never_loaded(reference_run, tmp_path):
    import shutil

    from cradle_jax.train.checkpoints import Checkpoints

    latest = reference_run / "checkpoints" / "latest"
    newest = max(int(p.name) for p in latest.iterdir() if p.name.isdigit())
    copy = tmp_path / "checkpoints" / "latest"
    shutil.copytree(latest / str(newest), copy / str(newest))
    half = copy / f"{newest + 5}.orbax-checkpoint-tmp-1700000000"
    shutil.copytree(latest / str(newest), half)
    for file in half.rglob("*"):
        if file.is_file():
            file.write_bytes(file.read_bytes()[: len(file.read_bytes()) // 2])
    checkpoints = Checkpoints(tmp_path)
    assert checkpoints.latest_step() == newest
    assert checkpoints.latest_progress().finished
    checkpoints.close()
