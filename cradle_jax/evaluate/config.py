"""A run's `eval` section over today's defaults (cradle_jax/config.py, docs/metrics.md)."""

import ml_collections

from cradle_jax.config import eval_config


def eval_settings(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A run's `eval` section over today's defaults (runs trained before a field existed)."""
    settings = eval_config()
    settings.update(config.get("eval", {}))
    return settings
