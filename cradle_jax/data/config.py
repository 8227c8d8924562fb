"""Defaults of the `data` section of an experiment config (docs/data.md)."""

import ml_collections
from ml_collections import config_dict


def data_config() -> ml_collections.ConfigDict:
    """The data fields every experiment config starts from; dataset configs override a few."""
    c = ml_collections.ConfigDict()
    c.path = ""  # the .h5ad file
    c.layer = ""  # layer holding raw counts; "" = X
    c.backed = False  # read counts from disk by row blocks instead of loading them
    c.perturbation_key = "perturbation"
    c.separator = "+"
    c.control_label = "non-targeting"
    c.qc_threshold = 3  # MAD multiplier t (docs/data.md#qc-rules); thresholds for 3, 4, 5 kept
    c.qc_mode = "total"  # total: Q = 1 (fail any); each: one column per criterion
    # obs columns of QC metrics spelled differently, "metric=column,metric=column"
    # (docs/data.md#qc-metrics); unset (None), as in configs written before it, names none
    c.qc_columns = config_dict.placeholder(str)
    c.qc_doublets = True  # run Scrublet on the counts (docs/data.md#doublets)
    c.split = "random"  # random (64/16/20) | combinations (unseen pairs in test) | column
    c.split_column = "split"
    c.split_seed = -1  # -1: the run seed
    c.frac_combinations_train = 0.75
    c.references = "same_treatment_fail"  # | opposite_label | none
    c.reference_group_key = ""  # obs column grouping references; "" = the treatment label
    c.n_reference_samples = 50
    return c
