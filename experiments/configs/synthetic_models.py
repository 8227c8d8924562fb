"""The four models on the simulator: the demo's network and training, single perturbations.

SVAE+ models one perturbation per cell, so the model comparison (experiments/sweeps/
simulator_models.py) runs on a simulated file without pairs, which `make sweep-models` writes:

    cradle-jax simulate --n_pairs 0 ... --out runs/models/simulated.h5ad

With no pairs there is no unseen combination to hold out: the split is random (64/16/20) and the
headline row is on all perturbations, as for Replogle and Adamson.
"""

from pathlib import Path

import ml_collections

from cradle_jax.config import load_config_file


def get_config() -> ml_collections.ConfigDict:
    config = load_config_file(Path(__file__).with_name("synthetic.py"))
    config.data.path = "runs/models/simulated.h5ad"
    config.data.split = "random"
    return config
