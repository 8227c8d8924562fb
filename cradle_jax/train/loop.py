"""The training loop: epochs, validation, early stopping, checkpoints, resume
(docs/method.md#training).

`train_and_evaluate(config, workdir)` is what `cradle-jax train` runs. Killed at any moment and
started again with the same workdir, it resumes from the latest complete checkpoint and ends
with the parameters an uninterrupted run would have: the data order of epoch e and the keys of
step s depend only on (seed, e) and (seed, s), and the checkpoint holds the position in the
data order.
"""

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import ml_collections
from jax.sharding import Mesh
from tqdm import tqdm

from cradle_jax import atomic
from cradle_jax.data.batches import num_batches
from cradle_jax.data.cell_splits import cell_splits_of, write_cell_splits
from cradle_jax.train.bundle import param_shapes, write_model_meta
from cradle_jax.train.checkpoints import Checkpoints
from cradle_jax.train.config import check_config
from cradle_jax.train.errors import RunError
from cradle_jax.train.iwelbo import split_iwelbo
from cradle_jax.train.keys import purpose_key
from cradle_jax.train.logs import MetricsLog
from cradle_jax.train.mesh import replicate, replicated, to_host
from cradle_jax.train.prefetch import WaitClock, prefetch
from cradle_jax.train.run import Run, announce, initial_state, open_run
from cradle_jax.train.state import Progress, TrainState
from cradle_jax.train.step import make_eval_step, make_optimizer, make_train_step
from cradle_jax.train.workdir import CONFIG_NAME, prepare_workdir

SUMMARY_NAME = "training.json"


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def _weighted_sums(sums: dict, n_cells: int, loss, aux: dict) -> dict:
    terms = {"loss": loss, **aux}
    return {name: sums.get(name, 0.0) + n_cells * value for name, value in terms.items()}


def _validate(run: Run, eval_step, params: dict, epoch: int) -> dict[str, float]:
    """Cell-weighted means of the loss terms over the validation split."""
    key_data = replicate(purpose_key(run.config.seed, f"validation/{epoch}"), run.mesh)
    sums, n_total = {}, 0
    batches = prefetch(run.batches("val"), run.config.train.prefetch_batches)
    for i, (n_cells, batch) in enumerate(batches):
        loss, aux = eval_step(params, batch, run.val_stats, key_data, i, *run.resident)
        sums = _weighted_sums(sums, n_cells, loss, aux)
        n_total += n_cells
    return {name: float(to_host(value)) / n_total for name, value in sums.items()}


def _epoch_line(epoch: int, step: int, train: dict, val: dict, progress: Progress) -> str:
    best = f"{progress.best_val_loss:.4g} (epoch {progress.best_epoch + 1})"
    terms = " ".join(
        f"{name.removeprefix('loss_term_')} {value:.4g}"
        for name, value in train.items()
        if name.startswith("loss_term_") or name == "counterfactual_kl"
    )
    return (
        f"epoch {epoch + 1} step {step} | train loss {train['loss']:.4g} ({terms}) | "
        f"val loss {val['loss']:.4g} best {best}"
    )


@dataclass
class _Steps:
    """The compiled steps of a run and what stays fixed across them."""

    train: Callable
    eval: Callable
    run_key: jax.Array
    log: MetricsLog
    checkpoints: Checkpoints
    started: float  # when this launch began training, for the ETA
    first_step: int  # the step it began at


def _train(run: Run, workdir: Path, checkpoints: Checkpoints) -> Progress:
    """Train until early stopping, max_epochs or max_steps; resume from the latest checkpoint."""
    train_cfg = run.config.train
    optimizer = make_optimizer(
        train_cfg.learning_rate,
        train_cfg.weight_decay,
        train_cfg.clip_norm,
        train_cfg.mask_lr_scale,
        train_cfg.dispersion_lr_scale,
    )
    state = initial_state(run, optimizer, fresh=checkpoints.latest_step() is None)
    progress = Progress()
    if checkpoints.latest_step() is not None:
        state, progress = checkpoints.restore_latest(state)
        announce(f"resuming from step {checkpoints.latest_step()} (epoch {progress.epoch + 1})")
    step = int(to_host(state.step))
    progress.extend(step, train_cfg.max_epochs, train_cfg.max_steps)
    if progress.finished:
        return progress
    resident = run.cells is not None
    steps = _Steps(
        train=make_train_step(run.cfg, run.loss_cfg, optimizer, run.mesh, resident),
        eval=make_eval_step(run.cfg, run.loss_cfg, run.mesh, resident),
        run_key=replicate(purpose_key(run.config.seed, "train"), run.mesh),
        log=MetricsLog(workdir, resume_step=step, enabled=jax.process_index() == 0),
        checkpoints=checkpoints,
        started=time.perf_counter(),
        first_step=step,
    )
    try:
        while not progress.finished:
            state, step = _train_epoch(run, steps, state, step, progress)
    finally:
        steps.log.close()
    return progress


def _train_epoch(
    run: Run, steps: _Steps, state: TrainState, step: int, progress: Progress
) -> tuple[TrainState, int]:
    """The rest of the current epoch from `progress.batch` (or up to max_steps), with its
    validation and log line when it completes; the latest checkpoint saved at the end."""
    train_cfg = run.config.train
    n_batches = num_batches(len(run.data.cells("train")), run.batch_size)
    epoch_start, cells_this_epoch = time.perf_counter(), 0
    sums = dict(progress.epoch_sums)
    bar = tqdm(
        total=n_batches,
        initial=progress.batch,
        desc=f"epoch {progress.epoch + 1}",
        leave=False,
        disable=None if jax.process_index() == 0 else True,
    )
    batches = run.batches("train", epoch=progress.epoch, shuffle=True, start=progress.batch)
    input_wait = WaitClock()
    for n_cells, batch in input_wait.timed(prefetch(batches, train_cfg.prefetch_batches)):
        state, loss, aux = steps.train(state, batch, run.train_stats, steps.run_key, *run.resident)
        sums = _weighted_sums(sums, n_cells, loss, aux)
        progress.batch += 1
        progress.epoch_cells += n_cells
        cells_this_epoch += n_cells
        step += 1
        bar.update()
        if step % train_cfg.log_every_steps == 0:
            steps.log.write(step, {"train/step_loss": float(to_host(loss))})
        if train_cfg.max_steps and step >= train_cfg.max_steps:
            progress.stop_reason = "max_steps"
            break
        if step % train_cfg.checkpoint_every_steps == 0 and progress.batch < n_batches:
            progress.epoch_sums = {k: float(to_host(v)) for k, v in sums.items()}
            steps.checkpoints.save_latest(step, state, progress)
    bar.close()
    progress.epoch_sums = {k: float(to_host(v)) for k, v in sums.items()}
    if progress.batch == n_batches:
        seconds = time.perf_counter() - epoch_start
        wait_share = input_wait.seconds / seconds
        steps.log.write(step, {"train/input_wait_share": wait_share})
        line = _end_epoch(run, steps.eval, state, progress, step, steps.checkpoints, steps.log)
        eta = _duration(_eta(run, steps, progress, step, n_batches))
        rate = cells_this_epoch / seconds
        announce(f"{line} | {rate:,.0f} cells/s, input wait {wait_share:.1%} | ETA ≤ {eta}")
    steps.checkpoints.save_latest(step, state, progress)
    return state, step


def _eta(run: Run, steps: _Steps, progress: Progress, step: int, n_batches: int) -> float:
    """Seconds left at this launch's mean step time, to max_epochs (or max_steps)."""
    if progress.finished:
        return 0.0
    train_cfg = run.config.train
    per_step = (time.perf_counter() - steps.started) / (step - steps.first_step)
    steps_left = (train_cfg.max_epochs - progress.epoch) * n_batches
    if train_cfg.max_steps:
        steps_left = min(steps_left, train_cfg.max_steps - step)
    return per_step * steps_left


def _end_epoch(
    run: Run,
    eval_step,
    state: TrainState,
    progress: Progress,
    step: int,
    checkpoints: Checkpoints,
    log: MetricsLog,
) -> str:
    """Validation, early-stopping bookkeeping and the best checkpoint; the epoch's log line."""
    train_cfg = run.config.train
    train = {k: v / progress.epoch_cells for k, v in progress.epoch_sums.items()}
    if not math.isfinite(train["loss"]):
        raise RunError(
            f"the training loss became {train['loss']} in epoch {progress.epoch + 1}; "
            f"try a smaller train.learning_rate"
        )
    val = _validate(run, eval_step, state.params, progress.epoch)
    improved = progress.best_val_loss is None or val["loss"] < progress.best_val_loss
    if improved:
        progress.best_val_loss, progress.best_epoch = val["loss"], progress.epoch
        progress.bad_epochs = 0
    else:
        progress.bad_epochs += 1
    epoch = progress.epoch
    progress.epoch, progress.batch, progress.epoch_sums, progress.epoch_cells = epoch + 1, 0, {}, 0
    if train_cfg.patience and progress.bad_epochs >= train_cfg.patience:
        progress.stop_reason = "early_stopping"
    elif progress.epoch >= train_cfg.max_epochs:
        progress.stop_reason = "max_epochs"
    if improved:
        checkpoints.save_best(step, state, progress)
    record = {f"train/{k}": v for k, v in train.items()} | {f"val/{k}": v for k, v in val.items()}
    log.write(step, {"epoch": epoch + 1, **record})
    return _epoch_line(epoch, step, train, val, progress)


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | Path, mesh: Mesh | None = None
) -> dict:
    """Train `config` in `workdir` (resuming what is there), then score the best parameters.

    Returns the run summary also written to `workdir/training.json`: steps, epochs, why training
    stopped, best validation loss and its epoch, and the predictive IWELBO on validation.
    """
    workdir = Path(workdir)
    # A new run reads and checks its data before writing anything, so bad input leaves no
    # half-made workdir; a resumed one first checks that the config still matches.
    loss_cfg = check_config(config)
    run = None if (workdir / CONFIG_NAME).exists() else open_run(config, loss_cfg, mesh)
    changed = prepare_workdir(workdir, config, primary=jax.process_index() == 0)
    if changed:
        announce(f"resuming with changed settings: {', '.join(changed)}")
    summary_path = workdir / SUMMARY_NAME
    checkpoints = Checkpoints(workdir)
    progress = checkpoints.latest_progress()
    if progress is not None and summary_path.exists():
        train_cfg = config.train
        progress.extend(checkpoints.latest_step(), train_cfg.max_epochs, train_cfg.max_steps)
        if progress.finished:
            checkpoints.close()
            announce(f"{workdir} holds a finished run ({progress.stop_reason}); nothing to do")
            return json.loads(summary_path.read_text())
    run = run or open_run(config, loss_cfg, mesh)
    if jax.process_index() == 0:
        write_model_meta(workdir, run.data, run.cfg, config)
        write_cell_splits(cell_splits_of(config.data.path, run.data.split), workdir)
    try:
        started = time.perf_counter()
        progress = _train(run, workdir, checkpoints)
        summary = _summary(run, progress, checkpoints, time.perf_counter() - started)
    finally:
        checkpoints.close()
    if jax.process_index() == 0:
        atomic.write_json(summary_path, summary)
    announce(_finished_line(summary))
    return summary


def _summary(run: Run, progress: Progress, checkpoints: Checkpoints, seconds: float) -> dict:
    """What training.json records of a finished launch, with the predictive IWELBO of the best
    parameters on validation when train.iwelbo_particles asks for it."""
    summary = {
        "steps": checkpoints.latest_step(),
        "epochs": progress.epoch,
        "stop_reason": progress.stop_reason,
        "best_epoch": None if progress.best_epoch is None else progress.best_epoch + 1,
        "best_val_loss": progress.best_val_loss,
        "cells": {split: len(run.data.cells(split)) for split in ("train", "val", "test")},
        "devices": run.mesh.size,
        "processes": jax.process_count(),
        "seconds_this_run": round(seconds, 1),
    }
    train_cfg = run.config.train
    if train_cfg.iwelbo_particles and checkpoints.best_step() is not None:
        params = checkpoints.restore_best_params(param_shapes(run.cfg, replicated(run.mesh)))
        summary["val_iwelbo"] = split_iwelbo(
            params,
            run.data,
            "val",
            run.cfg,
            run.mesh,
            n_particles=train_cfg.iwelbo_particles,
            batch_size=train_cfg.iwelbo_batch_size,
            key_data=purpose_key(run.config.seed, "iwelbo"),
        )
    return summary


def _finished_line(summary: dict) -> str:
    """The last line of a run; a run stopped inside its first epoch has no best model yet."""
    if summary["best_val_loss"] is None:
        best = "no validation pass yet, so no best model (raise train.max_steps)"
    else:
        best = f"best val loss {summary['best_val_loss']:.4g} at epoch {summary['best_epoch']}"
    iwelbo = f"; val IWELBO {summary['val_iwelbo']:.4g}" if "val_iwelbo" in summary else ""
    return f"finished: {summary['stop_reason']}; {best}{iwelbo}"
