"""Defaults of the `eval` section of an experiment config (docs/metrics.md), and the library
size cells are generated at when no depth is asked for."""

import ml_collections

# ℓ of generated cells at the paper's depth (docs/metrics.md#library-size-caveat)
EVAL_LIBRARY = 1e4


def eval_config() -> ml_collections.ConfigDict:
    """Particles and cell counts of the evaluation; the published values are the defaults."""
    c = ml_collections.ConfigDict()
    c.ate_particles = 2500  # generated cells per label, model ATE (docs/metrics.md#model-ate)
    c.ate_chunk = 128  # particles per compiled chunk
    c.ate_from_means = False  # decoder means, not sampled counts: lower variance, faster
    c.qc_cells = 100  # generated cells per label, QC pass rate (docs/metrics.md#qc-pass-rate)
    c.qc_doublets = True  # Scrublet on generated cells
    c.iwelbo_particles = 100  # test IWELBO (docs/metrics.md#iwelbo)
    c.iwelbo_batch_size = 128
    return c


def eval_settings(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A run's `eval` section over today's defaults (runs trained before a field existed)."""
    settings = eval_config()
    settings.update(config.get("eval", {}))
    return settings
