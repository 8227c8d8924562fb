"""`cradle-jax simulate`: write a simulated Perturb-seq dataset with its planted truth."""

import logging

from absl import flags

from cradle_jax.cli.common import N_CELLS
from cradle_jax.data.simulate import SimulationConfig, simulate, write_simulation

_DEFAULTS = SimulationConfig()
N_GENES = flags.DEFINE_integer("n_genes", _DEFAULTS.n_genes, "simulate: number of genes")
N_PERTURBATIONS = flags.DEFINE_integer(
    "n_perturbations", _DEFAULTS.n_perturbations, "simulate: number of single perturbations"
)
N_PAIRS = flags.DEFINE_integer("n_pairs", _DEFAULTS.n_pairs, "simulate: number of combinations")
ARTIFACT_FRACTION = flags.DEFINE_float(
    "artifact_fraction", _DEFAULTS.artifact_fraction, "simulate: fraction of artifact cells"
)
ARTIFACT_DEPENDENCE = flags.DEFINE_float(
    "artifact_perturbation_dependence",
    _DEFAULTS.artifact_perturbation_dependence,
    "simulate: damaged-cell rate multiplier for toxic perturbations (1 = independent)",
)


def run(seed: int, out: str) -> None:
    """Simulate with the flags' parameters and write `out` plus its `.truth.npz`."""
    config = SimulationConfig(
        n_cells=_DEFAULTS.n_cells if N_CELLS.value is None else N_CELLS.value,
        n_genes=N_GENES.value,
        n_perturbations=N_PERTURBATIONS.value,
        n_pairs=N_PAIRS.value,
        artifact_fraction=ARTIFACT_FRACTION.value,
        artifact_perturbation_dependence=ARTIFACT_DEPENDENCE.value,
        seed=seed,
    )
    sim = simulate(config)
    data_path, truth_path = write_simulation(sim, out)
    logging.info("wrote %s (%d cells x %d genes) and %s", data_path, *sim.adata.shape, truth_path)
    print(f"wrote {data_path} ({sim.adata.n_obs} cells x {sim.adata.n_vars} genes), {truth_path}")
