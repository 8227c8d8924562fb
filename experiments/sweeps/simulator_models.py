"""CRADLE-VAE and the baselines (docs/method.md#baselines) on the simulator with planted artifacts.

model.name in {cradle, sams_vae, cvae, svae_plus} x seed {0, 1, 2}: 12 runs of
experiments/configs/synthetic_models.py, which reads runs/models/simulated.h5ad, a simulated
file of single perturbations (SVAE+ models no combinations). `make sweep-models` writes it and
runs the sweep and the aggregate table; by hand:

    cradle-jax simulate --n_cells 6000 --n_genes 500 --n_perturbations 12 --n_pairs 0 \
        --artifact_fraction 0.15 --seed 0 --out runs/models/simulated.h5ad
    cradle-jax sweep --sweep experiments/sweeps/simulator_models.py --workdir runs/models/sweep
    cradle-jax aggregate runs/models/sweep

The planted truth beside the file adds the truth ATE-ρ column to the table.
"""

from cradle_jax.sweep.grid import product

MODELS = ["cradle", "sams_vae", "cvae", "svae_plus"]


def get_sweep() -> tuple[str, list[dict]]:
    grid = product({"model.name": MODELS, "seed": [0, 1, 2]})
    return "experiments/configs/synthetic_models.py", grid
