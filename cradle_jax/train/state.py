"""What a training run carries from step to step, and what it needs to resume.

`TrainState` is the device part (a pytree Orbax saves as arrays); `Progress` the host part
(a small JSON record): where in the data order the run stands and the early-stopping state.
Together they are everything a resumed run needs: the data order of epoch e and the random keys
of step s are functions of (seed, e) and (seed, s) alone (docs/method.md#randomness).
"""

from dataclasses import asdict, dataclass, field

import jax
import jax.numpy as jnp
import optax

# Loss terms logged under other names before they were renamed to say what they are
# (docs/method.md#objective): checkpoints and metrics files written then read under today's.
RENAMED_TERMS = {"cf_KLdivergence": "counterfactual_kl", "loss_term_qc_E": "loss_term_artifact_E"}


def current_term_name(name: str) -> str:
    """Today's name of a logged loss term, kept behind its `train/` or `val/` prefix, so a
    checkpoint or metrics file from before the rename resumes under one set of names."""
    prefix, slash, term = name.rpartition("/")
    return f"{prefix}{slash}{RENAMED_TERMS.get(term, term)}"


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class TrainState:
    """Parameters, optimiser state and the number of steps taken."""

    params: dict
    opt_state: optax.OptState
    step: jax.Array  # int32 scalar

    @classmethod
    def create(cls, params: dict, optimizer: optax.GradientTransformation) -> "TrainState":
        return cls(params=params, opt_state=optimizer.init(params), step=jnp.zeros((), jnp.int32))


@dataclass
class Progress:
    """Position in the data order and early-stopping bookkeeping (host side, JSON).

    epoch: the epoch being trained (0-based); batch: the next batch of that epoch to run;
    best_val_loss / best_epoch: the best validation loss so far and its epoch (None before the
    first validation); bad_epochs: epochs since it last improved; epoch_sums / epoch_cells:
    the running cell-weighted sums of the loss terms over the epoch's batches so far (so a
    resumed epoch reports the same training loss); stop_reason: why training ended
    ("early_stopping", "max_epochs", "max_steps"), None while it goes on.
    """

    epoch: int = 0
    batch: int = 0
    best_val_loss: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    epoch_sums: dict[str, float] = field(default_factory=dict)
    epoch_cells: int = 0
    stop_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.stop_reason is not None

    def extend(self, step: int, max_epochs: int, max_steps: int) -> None:
        """Reopen a run stopped by an epoch or step limit that has since been raised."""
        more_epochs = self.epoch < max_epochs
        more_steps = not max_steps or step < max_steps
        if self.stop_reason in ("max_epochs", "max_steps") and more_epochs and more_steps:
            self.stop_reason = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Progress":
        """A Progress from its JSON record; running sums saved under a term's old name
        (`RENAMED_TERMS`) continue under its new one."""
        sums = {current_term_name(k): v for k, v in values.get("epoch_sums", {}).items()}
        return cls(**{**values, "epoch_sums": sums})
