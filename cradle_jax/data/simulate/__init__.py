"""A simulated Perturb-seq dataset with planted truth (docs/data.md#simulator), mirroring the
CRADLE model (docs/method.md#cradle-model).

Generative story, per cell i with label t (control, a single, or a pair of singles):

    z_i   = z_b,i + s_t,            z_b,i ~ N(0, I_L)
    s_t   = Σ_{singles j in t} m_j ⊙ e_j  (+ w_t, the planted interaction, for some pairs)
    ρ_i   = softmax(b + W^T z_i + κ · V^T tanh(z_i))                 (G,)
    ℓ_i   ~ LogNormal(log ℓ_med, σ_ℓ²)
    x_i   ~ NB(mean ℓ_i ρ_i, inverse dispersion θ_g)                 (Gamma–Poisson)

The QC genes (MT-, RPL/RPS, HB) have no loadings, so a clean cell's QC metrics do not depend on its
perturbation: only the planted artifacts, and the noise tails, fail the MAD rules
(docs/data.md#qc-rules).
Artifacts replace a cell's counts after its clean counts are drawn (same z, same ℓ):
  * damaged: cytoplasmic RNA lost, each non-MT count kept with probability k ~ U(damaged_keep),
    so the mitochondrial share rises several-fold and the depth falls;
  * empty: an ambient droplet, Poisson(ℓ_e · ambient) with ℓ_e far below a cell's depth and the
    population-average profile as `ambient`;
  * doublet: the cell's clean counts plus the clean counts of a random other cell of its block.
The damaged rate is multiplied by `artifact_perturbation_dependence` for cells carrying a "toxic"
single, then rescaled so the overall damaged share stays what the config asks for: this is where
artifacts bias a naive ATE.

The true ATE is on the evaluation scale (docs/metrics.md#evaluation-scale) at ℓ = 1e4 and
computed by Monte Carlo: `ate_cells` fresh clean cells per label, drawn with common random
numbers (the same z_b and the same standard Gamma draws for every label, fresh Poisson draws per
label), so the differences to control carry far less Monte Carlo noise than independent draws
would.

Everything derives from `config.seed` through `host_rng(seed, purpose, ...)`. Counts are drawn in
row blocks of `block_size` cells (the result depends on block_size, which is part of the config);
no dense float64 (N, G) array is ever held.
"""

from cradle_jax.data.simulate.config import (
    ARTIFACT_NAMES,
    CONTROL_LABEL,
    DAMAGED,
    DOUBLET,
    EMPTY,
    NONE,
    SEPARATOR,
    SimulationConfig,
)
from cradle_jax.data.simulate.files import clean_counts, load_truth, write_simulation
from cradle_jax.data.simulate.generate import Simulation, simulate

__all__ = [
    "ARTIFACT_NAMES",
    "CONTROL_LABEL",
    "DAMAGED",
    "DOUBLET",
    "EMPTY",
    "NONE",
    "SEPARATOR",
    "Simulation",
    "SimulationConfig",
    "clean_counts",
    "load_truth",
    "simulate",
    "write_simulation",
]
