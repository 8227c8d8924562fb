"""The default experiment config, assembled from each package's section defaults.

experiments/configs/*.py start from `default_config()` and override a few fields (the Flax
examples' pattern); `load_config_file` reads such a file the way `--config` does.
"""

import importlib.util
from pathlib import Path

import ml_collections

from cradle_jax.data.config import data_config
from cradle_jax.evaluate.config import eval_config
from cradle_jax.models.config import model_config
from cradle_jax.train.config import loss_config, train_config


def default_config() -> ml_collections.ConfigDict:
    """Every field with its default: seed, data, model, loss, train, eval."""
    config = ml_collections.ConfigDict()
    config.seed = 0  # the one seed of the run; --seed overrides it
    config.data = data_config()
    config.model = model_config()
    config.loss = loss_config()
    config.train = train_config()
    config.eval = eval_config()
    return config


def load_config_file(path: str | Path) -> ml_collections.ConfigDict:
    """`get_config()` of a config file, loaded by path."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()
