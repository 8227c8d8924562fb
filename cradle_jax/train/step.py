"""The optimiser of SPEC A3 and one jit-compiled training step over the CRADLE objective."""

from collections.abc import Callable

import jax
import optax

from cradle_jax.models.cradle import CradleConfig
from cradle_jax.train.objective import LossConfig, cradle_loss


def make_optimizer(
    learning_rate: float, weight_decay: float = 1e-6, clip_norm: float = 100.0
) -> optax.GradientTransformation:
    """Global-norm clipping, coupled L2 added to the gradient before Adam (torch's Adam), Adam."""
    return optax.chain(
        optax.clip_by_global_norm(clip_norm),
        optax.add_decayed_weights(weight_decay),
        optax.adam(learning_rate),
    )


def make_train_step(
    cfg: CradleConfig, loss_cfg: LossConfig, optimizer: optax.GradientTransformation
) -> Callable:
    """step(params, opt_state, batch, stats, key) → (params, opt_state, loss, aux), jitted."""

    @jax.jit
    def step(params, opt_state, batch, stats, key):
        (loss, aux), grads = jax.value_and_grad(cradle_loss, has_aux=True)(
            params, batch, stats, key, cfg, loss_cfg
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, aux

    return step
