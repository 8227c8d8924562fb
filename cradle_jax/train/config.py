"""Defaults of the `loss` and `train` sections of an experiment config.

The loss: docs/method.md#objective; the optimiser and run control: docs/method.md#optimiser and
docs/method.md#training.
"""

import contextlib
import math

import ml_collections

from cradle_jax.models.config import resolve_model_config
from cradle_jax.train.errors import RunError
from cradle_jax.train.objective import LossConfig
from cradle_jax.train.resident import PIPELINES


def loss_config() -> ml_collections.ConfigDict:
    """α mode, cf-KL form and β (docs/method.md#class-weight, docs/method.md#counterfactual-kl)."""
    c = ml_collections.ConfigDict()
    c.alpha = "batch"  # batch | split | off | a number, e.g. "0.2"
    # What the α class weight scales: `cell` (the cell's whole ELBO term) | `reconstruction` (its
    # likelihood only, the original's: a β = 1/α VAE for pass cells whose basal posterior
    # collapses; docs/decisions.md#class-weight-scope).
    c.alpha_scope = "cell"
    # exact | reference | none. The original's form (`reference`: no 1/σ² on the mean term and
    # summed over cells, so worth β·B cells' ELBO) dominates the objective and collapses the basal
    # posterior (docs/decisions.md#cf-kl-exact).
    c.cf_kl = "exact"
    c.beta = 0.5
    # Weight of the basal-dependence penalty: the mean of z_b in each perturbation and QC group
    # held at the prior's 0, so the encoder does not take up the effects
    # (objective.basal_dependence, docs/decisions.md#basal-independence).
    c.independence = 10.0
    # perturbation | perturbation_and_qc: CRADLE's QC groups held at 0 too (keeps artifact damage
    # out of z_b in sum mode; costs unseen-pair accuracy in concat mode)
    c.independence_groups = "perturbation"
    return c


def train_config() -> ml_collections.ConfigDict:
    """Optimiser and run control (docs/method.md#training); the published values are defaults."""
    c = ml_collections.ConfigDict()
    c.batch_size = 512  # global batch; must divide by the device count
    c.learning_rate = 3e-4
    c.weight_decay = 1e-6  # coupled L2, added to the gradient before Adam
    c.mask_lr_scale = 10.0  # the mask logits' learning rate / learning_rate (see make_optimizer)
    c.dispersion_lr_scale = 1.0  # the NB log dispersions' learning rate / learning_rate
    # Start the NB decoder's gene-logit bias and log θ at the training QC-pass cells' moments
    # instead of a flat profile and θ = 1 (docs/decisions.md#likelihood-from-data)
    c.likelihood_from_data = True
    c.clip_norm = 100.0
    c.max_epochs = 2000
    c.max_steps = 0  # stop after this many steps; 0 = no limit
    c.patience = 50  # early stopping on validation loss, in epochs; 0 = never stop early
    c.checkpoint_every_steps = 2000  # latest checkpoint also at every epoch end
    c.log_every_steps = 100
    c.iwelbo_particles = 100  # predictive IWELBO on validation after training; 0 = skip
    c.iwelbo_batch_size = 128
    c.prefetch_batches = 2  # batches built on the host ahead of the device step; 0 = none
    c.input_workers = 4  # threads building host batches at once: backed reads overlap
    # auto | device | host: `device` keeps every cell on the device and gathers each batch
    # inside the step; `auto` does so when the data are in memory and fit in
    # device_memory_share of one device's memory (docs/decisions.md#device-resident-data)
    c.input_pipeline = "auto"
    c.device_memory_share = 0.5
    return c


def resolve_loss_config(loss: ml_collections.ConfigDict) -> LossConfig:
    """A LossConfig; `alpha` given as text that reads as a number becomes a fixed α."""
    alpha = loss.alpha
    if isinstance(alpha, str):
        with contextlib.suppress(ValueError):
            alpha = float(alpha)
    return LossConfig(
        alpha=alpha,
        cf_kl=loss.cf_kl,
        beta=float(loss.beta),
        alpha_scope=loss.alpha_scope,
        independence=float(loss.independence),
        independence_groups=loss.independence_groups,
    )


# The least value of each run-control field: 0 switches max_steps, patience and the IWELBO off.
TRAIN_MINIMA = {
    "batch_size": 1,
    "max_epochs": 1,
    "max_steps": 0,
    "patience": 0,
    "checkpoint_every_steps": 1,
    "log_every_steps": 1,
    "iwelbo_particles": 0,
    "iwelbo_batch_size": 1,
    "prefetch_batches": 0,
    "input_workers": 1,
    "weight_decay": 0,
    "mask_lr_scale": 0,
    "dispersion_lr_scale": 0,
    "learning_rate": 0,  # 0 freezes the parameters (a test of early stopping does)
}


def check_config(config: ml_collections.ConfigDict) -> LossConfig:
    """The loss section resolved; RunError naming a field of the loss, model or train section
    that cannot be used. Training runs this before it reads the data or touches the workdir."""
    if not config.data.path:
        raise RunError("config.data.path is empty: pass --config.data.path=FILE.h5ad")
    check_finite(config)
    try:
        loss_cfg = resolve_loss_config(config.loss)
        resolve_model_config(config.model, n_genes=1, n_perturbations=1, n_qc=1)
    except (TypeError, ValueError) as err:
        raise RunError(f"config: {err}") from err
    check_train_config(config.train)
    return loss_cfg


def check_finite(config: ml_collections.ConfigDict, prefix: str = "") -> None:
    """RunError naming the first number field that is NaN or infinite: `nan < 0` is false, so
    a range check alone lets such a value through to the optimiser."""
    for name, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            check_finite(value, f"{prefix}{name}.")
        elif isinstance(value, float) and not math.isfinite(value):
            raise RunError(f"{prefix}{name} must be a finite number, got {value}")


def check_train_config(train: ml_collections.ConfigDict) -> None:
    """RunError naming the first `train` field outside its range (a zero batch size, say)."""
    for field, least in TRAIN_MINIMA.items():
        if train[field] < least:
            raise RunError(f"train.{field} must be at least {least}, got {train[field]}")
    if not train.clip_norm > 0:
        raise RunError(f"train.clip_norm must be positive, got {train.clip_norm}")
    if not 0 < train.device_memory_share <= 1:
        raise RunError(
            f"train.device_memory_share must be in (0, 1], got {train.device_memory_share}"
        )
    if train.input_pipeline not in PIPELINES:
        raise RunError(
            f"train.input_pipeline must be one of {PIPELINES}, got {train.input_pipeline!r}"
        )
