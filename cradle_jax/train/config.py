"""Defaults of the `loss` and `train` sections of an experiment config (SPEC A1, A3, §3.7)."""

import contextlib

import ml_collections

from cradle_jax.train.objective import LossConfig


def loss_config() -> ml_collections.ConfigDict:
    """α mode, cf-KL form and β (§3.2, §3.4; A1)."""
    c = ml_collections.ConfigDict()
    c.alpha = "batch"  # batch | split | off | a number, e.g. "0.2"
    c.cf_kl = "reference"  # reference | exact | none
    c.beta = 0.5
    return c


def train_config() -> ml_collections.ConfigDict:
    """Optimiser and run control (§3.7): the published values are the defaults."""
    c = ml_collections.ConfigDict()
    c.batch_size = 512  # global batch; must divide by the device count
    c.learning_rate = 3e-4
    c.weight_decay = 1e-6  # coupled L2, added to the gradient before Adam
    c.clip_norm = 100.0
    c.max_epochs = 2000
    c.max_steps = 0  # stop after this many steps; 0 = no limit
    c.patience = 50  # early stopping on validation loss, in epochs; 0 = never stop early
    c.checkpoint_every_steps = 2000  # latest checkpoint also at every epoch end
    c.log_every_steps = 100
    c.iwelbo_particles = 100  # predictive IWELBO on validation after training; 0 = skip
    c.iwelbo_batch_size = 128
    return c


def resolve_loss_config(loss: ml_collections.ConfigDict) -> LossConfig:
    """A LossConfig; `alpha` given as text that reads as a number becomes a fixed α."""
    alpha = loss.alpha
    if isinstance(alpha, str):
        with contextlib.suppress(ValueError):
            alpha = float(alpha)
    return LossConfig(alpha=alpha, cf_kl=loss.cf_kl, beta=float(loss.beta))
