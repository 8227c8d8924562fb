"""Defaults of the `eval` section of an experiment config (SPEC §5, §6, A5)."""

import ml_collections


def eval_config() -> ml_collections.ConfigDict:
    """Particles and cell counts of the evaluation; the published values are the defaults."""
    c = ml_collections.ConfigDict()
    c.ate_particles = 2500  # generated cells per label for the model ATE (§5.2)
    c.ate_chunk = 128  # particles per compiled chunk
    c.ate_from_means = False  # decoder means instead of sampled counts (lower variance, A5)
    c.qc_cells = 100  # generated cells per label for the QC pass rate (§5.5)
    c.qc_doublets = True  # Scrublet on generated cells
    c.iwelbo_particles = 100  # test IWELBO (§5.6)
    c.iwelbo_batch_size = 128
    return c


def eval_settings(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A run's `eval` section over today's defaults (runs trained before a field existed)."""
    settings = eval_config()
    settings.update(config.get("eval", {}))
    return settings
