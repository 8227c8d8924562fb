"""The optimiser and the jit-compiled train and evaluation steps over a mesh.

The optimiser: docs/method.md#optimiser. Batches arrive row-sharded over the mesh's "data" axis,
everything else replicated (docs/method.md#data-parallelism). The step is one XLA program; on
several devices XLA inserts the gradient all-reduce itself.
"""

from collections.abc import Callable

import jax
import optax
from jax.sharding import Mesh

from cradle_jax.models.config import ModelConfig
from cradle_jax.train.mesh import replicated, row_sharded
from cradle_jax.train.objective import LossConfig, training_loss
from cradle_jax.train.resident import ResidentCells, gather_batch
from cradle_jax.train.state import TrainState

MASK_LOGITS = "mask_logits"
DISPERSIONS = ("log_theta", "artifact_log_theta")  # NB log dispersions, wherever they sit


def make_optimizer(
    learning_rate: float,
    weight_decay: float,
    clip_norm: float,
    mask_lr_scale: float,
    dispersion_lr_scale: float,
) -> optax.GradientTransformation:
    """Global-norm clipping, coupled L2 added to the gradient before Adam (torch's Adam), Adam;
    the mask logits' Adam steps are `mask_lr_scale` times larger, the NB log dispersions'
    `dispersion_lr_scale` times. The run's values and their defaults are the config's `train`
    section (`cradle_jax.config.train_config`).

    Adam moves a parameter by about the learning rate per step whatever its gradient's size, so
    a free parameter needs ~|Δ|/lr steps to reach its value: a mask logit starting at 0 needs
    thousands of steps at lr 1e-3 before a mask is off or on rather than a coin flip per
    particle, and a log dispersion starting at 0 (θ = 1) needs ~|log θ|/lr steps to reach the
    data's θ of 10–30. The network weights need no such reach, hence separate scales.
    """
    return optax.chain(
        optax.clip_by_global_norm(clip_norm),
        optax.add_decayed_weights(weight_decay),
        optax.adam(learning_rate),
        optax.masked(optax.scale(mask_lr_scale), _named(MASK_LOGITS)),
        optax.masked(optax.scale(dispersion_lr_scale), _named(*DISPERSIONS)),
    )


def _named(*names: str) -> Callable[[dict], dict]:
    """The mask of the parameters whose own name (last key of their path) is one of `names`."""

    def mask(params: dict) -> dict:
        return jax.tree_util.tree_map_with_path(
            lambda path, _: getattr(path[-1], "key", None) in names, params
        )

    return mask


def _batch(batch: dict | jax.Array, cells: ResidentCells | None) -> dict:
    """The batch dictionary: as given, or gathered from the resident cells by row index."""
    return batch if cells is None else gather_batch(cells, batch)


def _jit(function: Callable, mesh: Mesh | None, resident: bool, n_replicated: int, **options):
    """`function` jitted; with a mesh its second argument (the batch) row-sharded, the state
    before it and the `n_replicated` after it replicated, and the resident cells last."""
    if mesh is None:
        return jax.jit(function, **options)
    repl = replicated(mesh)
    in_shardings = (repl, row_sharded(mesh), *[repl] * (n_replicated + resident))
    return jax.jit(function, in_shardings=in_shardings, out_shardings=repl, **options)


def make_train_step(
    cfg: ModelConfig,
    loss_cfg: LossConfig,
    optimizer: optax.GradientTransformation,
    mesh: Mesh | None = None,
    resident: bool = False,
) -> Callable:
    """step(state, batch, stats, run_key[, cells]) → (state, loss, aux), jitted; the old state
    is donated.

    `run_key` is the run's training key as raw key data (uint32, `jax.random.key_data`); step s
    draws from fold_in(run_key, s), so a resumed run draws what an uninterrupted one would
    (docs/method.md#randomness).
    With a mesh the batch must be row-sharded over it and the rest replicated. `resident`: the
    batch is the cells' row indices (B,) int32, -1 for padding, and the step gathers them from
    `cells` (a ResidentCells) itself.
    """

    def step(state: TrainState, batch, stats: dict, run_key: jax.Array, cells=None):
        batch = _batch(batch, cells)
        key = jax.random.fold_in(jax.random.wrap_key_data(run_key), state.step)
        (loss, aux), grads = jax.value_and_grad(training_loss, has_aux=True)(
            state.params, batch, stats, key, cfg, loss_cfg
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        new_state = TrainState(
            params=optax.apply_updates(state.params, updates),
            opt_state=opt_state,
            step=state.step + 1,
        )
        return new_state, loss, aux

    return _jit(step, mesh, resident, n_replicated=2, donate_argnums=0)


def make_eval_step(
    cfg: ModelConfig, loss_cfg: LossConfig, mesh: Mesh | None = None, resident: bool = False
) -> Callable:
    """evaluate(params, batch, stats, key_data, i[, cells]) → (loss, aux), jitted, without
    gradients; `resident` as for `make_train_step`.

    Draws from fold_in(key_data, i). (real cells)·loss summed over one pass of a split is that
    split's whole objective: the per-cell terms of every cell plus each global KL once
    (docs/method.md#plate-reweighting).
    """

    def evaluate(params: dict, batch, stats: dict, key_data: jax.Array, i: jax.Array, cells=None):
        key = jax.random.fold_in(jax.random.wrap_key_data(key_data), i)
        return training_loss(params, _batch(batch, cells), stats, key, cfg, loss_cfg)

    return _jit(evaluate, mesh, resident, n_replicated=3)
