"""The `loss` and `train` sections of an experiment config checked, and the loss resolved.

Their fields and defaults are in cradle_jax/config.py. The loss: docs/method.md#objective; the
optimiser and run control: docs/method.md#optimiser and docs/method.md#training.
"""

import contextlib
import math

import ml_collections

from cradle_jax.models.config import resolve_model_config
from cradle_jax.train.errors import RunError
from cradle_jax.train.objective import LossConfig
from cradle_jax.train.resident import PIPELINES


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
