"""Norman et al. 2019: the paper's grid, split seed {0..4} x QC threshold t {3, 4, 5}.

The grid and the published values: docs/method.md#published-hyperparameters.

15 runs of experiments/configs/norman.py; the run seed stays 0, as in the paper's sweep. Give the
prepared .h5ad to every run with --set:

    cradle-jax sweep --sweep experiments/sweeps/norman.py --set data.path=norman.h5ad \
        --workdir runs/norman_sweep
    cradle-jax aggregate runs/norman_sweep
"""

from cradle_jax.sweep.grid import product


def get_sweep() -> tuple[str, list[dict]]:
    grid = product({"data.split_seed": range(5), "data.qc_threshold": [3, 4, 5]})
    return "experiments/configs/norman.py", grid
