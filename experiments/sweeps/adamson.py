"""Adamson et al. 2016: the paper's grid, run seed {0..4} x QC threshold t {3, 4, 5}.

The grid and the published values: docs/method.md#published-hyperparameters.

15 runs of experiments/configs/adamson.py; the random split stays fixed (split seed 0), as in
the paper's sweep. Give the prepared .h5ad to every run with --set:

    cradle-jax sweep --sweep experiments/sweeps/adamson.py --set data.path=adamson.h5ad \
        --workdir runs/adamson_sweep
    cradle-jax aggregate runs/adamson_sweep
"""

from cradle_jax.sweep.grid import product


def get_sweep() -> tuple[str, list[dict]]:
    grid = product({"seed": range(5), "data.qc_threshold": [3, 4, 5]})
    return "experiments/configs/adamson.py", grid
