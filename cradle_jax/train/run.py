"""Everything fixed for the length of a training run: the data, the model and loss settings, the
mesh, the split statistics and the input pipeline, opened once per launch; and the parameters a
run starts from."""

from dataclasses import dataclass

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from cradle_jax.data.batches import PADDING, batch_indices, build_local_batch
from cradle_jax.data.dataset import PerturbData, load_perturb_data
from cradle_jax.data.statistics import CountMoments, count_moments
from cradle_jax.models.config import ModelConfig, resolve_model_config
from cradle_jax.models.families import check_dosage, family_of
from cradle_jax.train.inputs import batch_arrays, split_stats
from cradle_jax.train.keys import purpose_key
from cradle_jax.train.likelihood_init import likelihood_from_data
from cradle_jax.train.mesh import check_batch_size, data_mesh, global_batch, local_rows, replicate
from cradle_jax.train.objective import LossConfig, init_params, placeholder_inputs
from cradle_jax.train.prefetch import ordered_map
from cradle_jax.train.resident import ResidentCells, choose_pipeline, resident_bytes, resident_cells
from cradle_jax.train.state import TrainState


def announce(text: str) -> None:
    """Print `text` once: from the first process of a multi-process run."""
    if jax.process_index() == 0:
        print(text, flush=True)


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
                yield real_cells(index), global_batch(local, self.mesh, self.batch_size)["index"]
            return

        def build(index: np.ndarray) -> tuple[int, dict]:
            return real_cells(index), batch_arrays(build_local_batch(self.data, index, self.rows))

        for n_cells, local in ordered_map(build, indices, self.config.train.input_workers):
            yield n_cells, global_batch(local, self.mesh, self.batch_size)


def real_cells(index: np.ndarray) -> int:
    return int((index != PADDING).sum())


def open_run(config: ml_collections.ConfigDict, loss_cfg: LossConfig, mesh: Mesh | None) -> Run:
    data = load_perturb_data(config.data.path, config.data, config.seed)
    mesh = data_mesh() if mesh is None else mesh
    check_batch_size(config.train.batch_size, mesh)
    cfg = resolve_model_config(
        config.model, len(data.gene_names), data.vocabulary.size, data.qc.shape[1]
    )
    check_dosage(cfg, data.dosage, data.labels)
    if not family_of(cfg).artifact_path:
        announce(f"model.name={cfg.name} uses no QC labels: loss.alpha and loss.cf_kl do not apply")
    elif note := _one_class_note(data, loss_cfg):
        announce(note)
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
        announce("input pipeline: batches built on the host")
        return None
    size = resident_bytes(data, layout) / 2**20
    announce(f"input pipeline: every cell on the device ({layout}, {size:,.0f} MiB per device)")
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


def initial_state(run: Run, optimizer, fresh: bool) -> TrainState:
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
