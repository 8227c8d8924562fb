"""The default experiment: every field with its default. Other configs start from this one.

The fields and their defaults are written, each with a comment, in cradle_jax/config.py
(`default_config`), where the package reads them too.

    cradle-jax train --config experiments/configs/default.py --config.data.path=cells.h5ad \
        --workdir runs/mine
"""

import ml_collections

from cradle_jax.config import default_config


def get_config() -> ml_collections.ConfigDict:
    return default_config()
