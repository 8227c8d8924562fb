"""Loss and optimiser settings the tests name in full: the original CRADLE-VAE's loss (α over the
likelihood only, its cf-KL form, no basal-dependence penalty) and a plain Adam, each with the
fields a test varies as keywords."""

from cradle_jax.config import train_config
from cradle_jax.train.objective import LossConfig
from cradle_jax.train.step import make_optimizer

_TRAIN = train_config()


def original_loss(
    alpha: str | float = "batch",
    cf_kl: str = "reference",
    beta: float = 0.5,
    alpha_scope: str = "reconstruction",
    independence: float = 0.0,
    independence_groups: str = "perturbation",
) -> LossConfig:
    """The original's loss, or a variant of it."""
    return LossConfig(alpha, cf_kl, beta, alpha_scope, independence, independence_groups)


def plain_optimizer(
    learning_rate: float,
    weight_decay: float = _TRAIN.weight_decay,
    clip_norm: float = _TRAIN.clip_norm,
    mask_lr_scale: float = 1.0,
    dispersion_lr_scale: float = 1.0,
):
    """Clipped Adam with a training run's coupled weight decay and clipping, and no
    per-parameter learning-rate scales."""
    return make_optimizer(
        learning_rate, weight_decay, clip_norm, mask_lr_scale, dispersion_lr_scale
    )
