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
from dataclasses import dataclass
from pathlib import Path

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from cradle_jax import atomic
from cradle_jax.data.batches import PADDING, batch_indices, build_local_batch, num_batches
from cradle_jax.data.dataset import PerturbData, load_perturb_data
from cradle_jax.data.statistics import CountMoments, count_moments
from cradle_jax.models.config import ModelConfig, resolve_model_config
from cradle_jax.models.families import check_dosage, family_of
from cradle_jax.train.bundle import param_shapes, write_model_meta
from cradle_jax.train.checkpoints import Checkpoints
from cradle_jax.train.config import check_config
from cradle_jax.train.errors import RunError
from cradle_jax.train.inputs import batch_arrays, split_stats
from cradle_jax.train.iwelbo import split_iwelbo
from cradle_jax.train.keys import purpose_key
from cradle_jax.train.likelihood_init import likelihood_from_data
from cradle_jax.train.logs import MetricsLog
from cradle_jax.train.mesh import (
    check_batch_size,
    data_mesh,
    global_batch,
    local_rows,
    replicate,
    replicated,
    to_host,
)
from cradle_jax.train.objective import LossConfig, init_params, placeholder_inputs
from cradle_jax.train.prefetch import WaitClock, ordered_map, prefetch
from cradle_jax.train.resident import ResidentCells, choose_pipeline, resident_bytes, resident_cells
from cradle_jax.train.state import Progress, TrainState
from cradle_jax.train.step import make_eval_step, make_optimizer, make_train_step
from cradle_jax.train.workdir import CONFIG_NAME, prepare_workdir

SUMMARY_NAME = "training.json"


def _say(text: str) -> None:
    if jax.process_index() == 0:
        print(text, flush=True)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


@dataclass
class Run:
    """Everything fixed for the length of a run."""

    config: ml_collections.ConfigDict
    data: PerturbData
    cfg: ModelConfig
    loss_cfg: LossConfig
    mesh: Mesh
    batch_size: int
    rows: slice
    train_stats: dict
    val_stats: dict
    cells: ResidentCells | None  # every cell on the device, or None: batches built on the host

    @property
    def resident(self) -> tuple[ResidentCells, ...]:
        """The steps' trailing argument: the resident cells, or nothing for host batches."""
        return () if self.cells is None else (self.cells,)

    def batches(self, split: str, *, epoch: int = 0, shuffle: bool = False, start: int = 0):
        """(number of real cells, global batch) for each batch of `split`; a device-resident
        run's batch is the cells' row indices, which the step gathers."""
        indices = batch_indices(
            self.data,
            split,
            self.batch_size,
            seed=self.config.seed,
            epoch=epoch,
            shuffle=shuffle,
            start_batch=start,
        )
        if self.cells is not None:
            for index in indices:
                local = {"index": index[self.rows].astype(np.int32)}
                yield _real_cells(index), global_batch(local, self.mesh, self.batch_size)["index"]
            return

        def build(index: np.ndarray) -> tuple[int, dict]:
            return _real_cells(index), batch_arrays(build_local_batch(self.data, index, self.rows))

        for n_cells, local in ordered_map(build, indices, self.config.train.input_workers):
            yield n_cells, global_batch(local, self.mesh, self.batch_size)


def _real_cells(index: np.ndarray) -> int:
    return int((index != PADDING).sum())


def _open_run(config: ml_collections.ConfigDict, loss_cfg: LossConfig, mesh: Mesh | None) -> Run:
    data = load_perturb_data(config.data.path, config.data, config.seed)
    mesh = data_mesh() if mesh is None else mesh
    check_batch_size(config.train.batch_size, mesh)
    cfg = resolve_model_config(
        config.model, len(data.gene_names), data.vocabulary.size, data.qc.shape[1]
    )
    check_dosage(cfg, data.dosage, data.labels)
    if not family_of(cfg).artifact_path:
        _say(f"model.name={cfg.name} uses no QC labels: loss.alpha and loss.cf_kl do not apply")
    elif note := _one_class_note(data, loss_cfg):
        _say(note)
    return Run(
        config=config,
        data=data,
        cfg=cfg,
        loss_cfg=loss_cfg,
        mesh=mesh,
        batch_size=config.train.batch_size,
        rows=local_rows(mesh, config.train.batch_size),
        train_stats=replicate(split_stats(data, "train"), mesh),
        val_stats=replicate(split_stats(data, "val"), mesh),
        cells=_input_pipeline(data, mesh, config.train),
    )


def _input_pipeline(
    data: PerturbData, mesh: Mesh, train: ml_collections.ConfigDict
) -> ResidentCells | None:
    """Every cell's x^cf computed once; then the cells put on the devices, or None where the
    batches are built on the host (train.input_pipeline, docs/decisions.md#device-resident-data).
    """
    data.counterfactual.prepare()
    layout = choose_pipeline(data, mesh, train.input_pipeline, train.device_memory_share)
    if layout == "host":
        _say("input pipeline: batches built on the host")
        return None
    size = resident_bytes(data, layout) / 2**20
    _say(f"input pipeline: every cell on the device ({layout}, {size:,.0f} MiB per device)")
    return resident_cells(data, mesh, layout)


def _one_class_note(data: PerturbData, loss_cfg: LossConfig) -> str | None:
    """What CRADLE's QC terms do when the training split has no QC-fail cells, or only those.

    Legal input, but α (the fail share) is then 0 or 1: the batch/split modes give one class no
    reconstruction weight, and without fail cells no cell has a counterfactual reference.
    """
    share = float((data.qc[data.cells("train")].max(axis=1) > 0).mean())
    if share not in (0.0, 1.0):
        return None
    if share == 0.0:
        note = "no QC-fail cells: no cell has a counterfactual reference (the cf term is 0)"
    else:
        note = "only QC-fail cells: the artifact path cannot be told from the rest"
    if loss_cfg.alpha in ("batch", "split"):
        weighted = "pass" if share == 0.0 else "fail"
        note += (
            f"; loss.alpha={loss_cfg.alpha} gives α = {share:g}, which leaves {weighted} cells "
            "no reconstruction weight: set loss.alpha=off to weight every cell 1"
        )
    return f"the training split has {note}"


def _initial_state(run: Run, optimizer, fresh: bool) -> TrainState:
    """Fresh parameters from the run's "init" key, identical on every process, replicated; for a
    `fresh` run (not resumed) with `train.likelihood_from_data`, the NB decoder's per-gene
    parameters start at the moments of the training split's QC-pass cells."""
    key = jax.random.wrap_key_data(purpose_key(run.config.seed, "init"))
    params = jax.jit(init_params, static_argnames="cfg")(key, *placeholder_inputs(run.cfg), run.cfg)
    params = jax.device_get(params)
    if fresh and run.config.train.likelihood_from_data and run.cfg.likelihood == "library_nb":
        params = likelihood_from_data(params, _training_moments(run.data))
    state = TrainState.create(params, optimizer)
    return replicate(jax.device_get(state), run.mesh)


def _training_moments(data: PerturbData) -> CountMoments:
    """Count moments of the training split's QC-pass cells (all its cells if none pass)."""
    train = data.cells("train")
    passing = train[data.qc[train].max(axis=1) == 0]
    cells = passing if len(passing) else train
    return count_moments(data.counts, cells, data.library_size)


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
        if name.startswith("loss_term_") or name == "cf_KLdivergence"
    )
    return (
        f"epoch {epoch + 1} step {step} | train loss {train['loss']:.4g} ({terms}) | "
        f"val loss {val['loss']:.4g} best {best}"
    )


def _train(run: Run, workdir: Path, checkpoints: Checkpoints) -> Progress:
    """Train until early stopping, max_epochs or max_steps; resume from the latest checkpoint."""
    tc = run.config.train
    optimizer = make_optimizer(
        tc.learning_rate, tc.weight_decay, tc.clip_norm, tc.mask_lr_scale, tc.dispersion_lr_scale
    )
    state = _initial_state(run, optimizer, fresh=checkpoints.latest_step() is None)
    progress = Progress()
    if checkpoints.latest_step() is not None:
        state, progress = checkpoints.restore_latest(state)
        _say(f"resuming from step {checkpoints.latest_step()} (epoch {progress.epoch + 1})")
    step = int(to_host(state.step))
    progress.extend(step, tc.max_epochs, tc.max_steps)
    if progress.finished:
        return progress
    resident = run.cells is not None
    train_step = make_train_step(run.cfg, run.loss_cfg, optimizer, run.mesh, resident)
    eval_step = make_eval_step(run.cfg, run.loss_cfg, run.mesh, resident)
    run_key = replicate(purpose_key(run.config.seed, "train"), run.mesh)
    log = MetricsLog(workdir, resume_step=step, enabled=jax.process_index() == 0)
    n_train = len(run.data.cells("train"))
    n_batches = num_batches(n_train, run.batch_size)
    started, steps_at_start = time.perf_counter(), step
    try:
        while not progress.finished:
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
            for n_cells, batch in input_wait.timed(prefetch(batches, tc.prefetch_batches)):
                state, loss, aux = train_step(state, batch, run.train_stats, run_key, *run.resident)
                sums = _weighted_sums(sums, n_cells, loss, aux)
                progress.batch += 1
                progress.epoch_cells += n_cells
                cells_this_epoch += n_cells
                step += 1
                bar.update()
                if step % tc.log_every_steps == 0:
                    log.write(step, {"train/step_loss": float(to_host(loss))})
                if tc.max_steps and step >= tc.max_steps:
                    progress.stop_reason = "max_steps"
                    break
                if step % tc.checkpoint_every_steps == 0 and progress.batch < n_batches:
                    progress.epoch_sums = {k: float(to_host(v)) for k, v in sums.items()}
                    checkpoints.save_latest(step, state, progress)
            bar.close()
            progress.epoch_sums = {k: float(to_host(v)) for k, v in sums.items()}
            wait_share = input_wait.seconds / (time.perf_counter() - epoch_start)
            if progress.batch == n_batches:
                log.write(step, {"train/input_wait_share": wait_share})
                line = _end_epoch(run, eval_step, state, progress, step, checkpoints, log)
                per_step = (time.perf_counter() - started) / (step - steps_at_start)
                steps_left = (tc.max_epochs - progress.epoch) * n_batches
                if tc.max_steps:
                    steps_left = min(steps_left, tc.max_steps - step)
                eta = 0 if progress.finished else per_step * steps_left
                rate = cells_this_epoch / (time.perf_counter() - epoch_start)
                _say(
                    f"{line} | {rate:,.0f} cells/s, input wait {wait_share:.1%} | "
                    f"ETA ≤ {_duration(eta)}"
                )
            checkpoints.save_latest(step, state, progress)
    finally:
        log.close()
    return progress


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
    tc = run.config.train
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
    if tc.patience and progress.bad_epochs >= tc.patience:
        progress.stop_reason = "early_stopping"
    elif progress.epoch >= tc.max_epochs:
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
    run = None if (workdir / CONFIG_NAME).exists() else _open_run(config, loss_cfg, mesh)
    changed = prepare_workdir(workdir, config, primary=jax.process_index() == 0)
    if changed:
        _say(f"resuming with changed settings: {', '.join(changed)}")
    summary_path = workdir / SUMMARY_NAME
    checkpoints = Checkpoints(workdir)
    progress = checkpoints.latest_progress()
    if progress is not None and summary_path.exists():
        tc = config.train
        progress.extend(checkpoints.latest_step(), tc.max_epochs, tc.max_steps)
        if progress.finished:
            checkpoints.close()
            _say(f"{workdir} holds a finished run ({progress.stop_reason}); nothing to do")
            return json.loads(summary_path.read_text())
    run = run or _open_run(config, loss_cfg, mesh)
    if jax.process_index() == 0:
        write_model_meta(workdir, run.data, run.cfg, config)
    try:
        started = time.perf_counter()
        progress = _train(run, workdir, checkpoints)
        summary = {
            "steps": checkpoints.latest_step(),
            "epochs": progress.epoch,
            "stop_reason": progress.stop_reason,
            "best_epoch": None if progress.best_epoch is None else progress.best_epoch + 1,
            "best_val_loss": progress.best_val_loss,
            "cells": {split: len(run.data.cells(split)) for split in ("train", "val", "test")},
            "devices": run.mesh.size,
            "processes": jax.process_count(),
            "seconds_this_run": round(time.perf_counter() - started, 1),
        }
        if config.train.iwelbo_particles and checkpoints.best_step() is not None:
            like = param_shapes(run.cfg, replicated(run.mesh))
            params = checkpoints.restore_best_params(like)
            summary["val_iwelbo"] = split_iwelbo(
                params,
                run.data,
                "val",
                run.cfg,
                run.mesh,
                n_particles=config.train.iwelbo_particles,
                batch_size=config.train.iwelbo_batch_size,
                key_data=purpose_key(config.seed, "iwelbo"),
            )
    finally:
        checkpoints.close()
    if jax.process_index() == 0:
        atomic.write_json(summary_path, summary)
    _say(_finished_line(summary))
    return summary


def _finished_line(summary: dict) -> str:
    """The last line of a run; a run stopped inside its first epoch has no best model yet."""
    if summary["best_val_loss"] is None:
        best = "no validation pass yet, so no best model (raise train.max_steps)"
    else:
        best = f"best val loss {summary['best_val_loss']:.4g} at epoch {summary['best_epoch']}"
    iwelbo = f"; val IWELBO {summary['val_iwelbo']:.4g}" if "val_iwelbo" in summary else ""
    return f"finished: {summary['stop_reason']}; {best}{iwelbo}"
