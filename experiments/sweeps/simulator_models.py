"""CRADLE-VAE and the baselines (SPEC Part B) on the simulated dataset, three seeds each.

model.name in {cradle, sams_vae, cvae, svae_plus} x seed {0, 1, 2}: 12 runs of
experiments/configs/synthetic.py, which reads runs/demo/simulated.h5ad (written by `make demo`;
another simulated file with --set data.path=FILE.h5ad). The planted truth beside the file
adds the truth ATE-ρ column to the aggregate table. SVAE+ models one perturbation per cell:
on data with pairs its runs fail with an error naming them and the sweep goes on with the
others; for all four on the same data, simulate with --n_pairs 0 and add
--set data.split=random.

    cradle-jax sweep --sweep experiments/sweeps/simulator_models.py --workdir runs/models_sweep
    cradle-jax aggregate runs/models_sweep
"""

from cradle_jax.sweep.grid import product

MODELS = ["cradle", "sams_vae", "cvae", "svae_plus"]


def get_sweep() -> tuple[str, list[dict]]:
    return "experiments/configs/synthetic.py", product({"model.name": MODELS, "seed": [0, 1, 2]})
