"""The default experiment: every field with its default. Other configs start from this one.

    cradle-jax train --config experiments/configs/default.py --config.data.path=cells.h5ad \
        --workdir runs/mine
"""

import ml_collections

from cradle_jax.data.config import data_config
from cradle_jax.models.config import model_config
from cradle_jax.train.config import loss_config, train_config


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0  # the one seed of the run; --seed overrides it
    config.data = data_config()
    config.model = model_config()
    config.loss = loss_config()
    config.train = train_config()
    return config
