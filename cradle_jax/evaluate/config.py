"""A run's `eval` section over today's defaults (cradle_jax/config.py, docs/metrics.md), and the
library size cells are generated at when no depth is asked for."""

import ml_collections

from cradle_jax.config import eval_config

# ℓ of generated cells at the paper's depth (docs/metrics.md#library-size-caveat)
EVAL_LIBRARY = 1e4


def eval_settings(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A run's `eval` section over today's defaults (runs trained before a field existed)."""
    settings = eval_config()
    settings.update(config.get("eval", {}))
    return settings
