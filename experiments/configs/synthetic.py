"""The demo: the built-in simulator with planted truth, trained in minutes on 2 CPU cores.

The simulator (docs/data.md#simulator) makes pairs of perturbations, so the combinations split
puts unseen pairs in test, as for Norman and Dixit. The network is much smaller than the
published one and trains for a few epochs: the point is a run that finishes quickly and whose
recovered effects can be checked against the planted ones, not the paper's numbers.
alpha = "off" weighs every cell 1: the class weight halves the effective number of cells and
costs accuracy against the planted truth on every measure (docs/decisions.md#class-weight-off).

data.path is the file the Makefile's demo target writes with
`cradle-jax simulate ... --out runs/demo/simulated.h5ad`, relative to the repository root, where
the command runs:

    cradle-jax train --config experiments/configs/synthetic.py --workdir runs/demo/train
"""

import ml_collections

from cradle_jax.config import default_config


def get_config() -> ml_collections.ConfigDict:
    config = default_config()
    config.data.path = "runs/demo/simulated.h5ad"
    config.data.split = "combinations"

    # Sized for a few minutes on 2 CPU cores; tune here after timing.
    config.model.n_latent = 10
    config.model.decoder_n_hidden = 128
    config.model.basal_encoder_n_hidden = 128
    config.model.embedding_encoder_n_layers = 2
    config.model.embedding_encoder_n_hidden = 64
    config.model.n_particles = 5
    config.model.mask_prior_prob = 0.1
    config.loss.alpha = "off"
    config.loss.beta = 0.1
    config.train.batch_size = 256
    config.train.learning_rate = 3e-3
    config.train.max_epochs = 40
    config.train.patience = 10
    config.train.checkpoint_every_steps = 200
    config.train.log_every_steps = 50
    config.train.iwelbo_particles = 100
    config.train.iwelbo_batch_size = 256
    return config
