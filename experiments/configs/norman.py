"""Norman et al. 2019 (CRISPRa, K562, singles and pairs): 25% of the pairs unseen in training.

Values: the paper sweep's column of docs/method.md#published-hyperparameters (the sweep files
carry the published hyperparameters; for Norman demo and sweep agree). The sweep grid is
split_seed {0..4} x qc_threshold {3, 4, 5}; this is its first point. Every other Norman value
(L = 200, pi = 0.01, beta = 0.5, lr 3e-4, basal encoder 1x400, patience 50, batch 512) is the
default; tests/experiments/test_configs.py checks the full column.

--config.data.path names an .h5ad prepared for the data contract (docs/data.md#input-contract:
raw counts, one `perturbation` column with pairs joined by `+`, controls labelled
`non-targeting`):

    cradle-jax train --config experiments/configs/norman.py --config.data.path=norman.h5ad \
        --workdir runs/norman
"""

import ml_collections

from cradle_jax.config import default_config


def get_config() -> ml_collections.ConfigDict:
    config = default_config()
    config.data.split = "combinations"
    config.data.split_seed = 0  # fixed, not the run seed: the sweep varies it separately
    return config
