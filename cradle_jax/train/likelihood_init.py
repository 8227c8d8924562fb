"""The decoder's per-gene likelihood parameters started at the training cells' moments.

From the networks' own initialisation every gene starts with the same share of a cell's counts
(softmax of a zero bias) and θ = 1. A run of a few thousand steps then spends its first epochs
learning the average profile, and a gene's log θ moves about one learning rate per step, so a
gene whose θ is 30 is still far below it when training stops: generated cells come out too
noisy, which shrinks effects on the log scale and widens QC metrics such as the mitochondrial
share (docs/decisions.md#likelihood-from-data).
"""

import numpy as np

from cradle_jax.data.statistics import CountMoments

DISPERSION_RANGE = (1e-2, 1e3)  # θ beyond 1e3 is Poisson for any count a cell holds
DECODER = "decoder$params"


def likelihood_from_data(params: dict, moments: CountMoments) -> dict:
    """`params` with the decoder's gene-logit bias at log p (centred) and its log θ at the moment
    estimate, clipped to DISPERSION_RANGE; every other parameter unchanged."""
    decoder = params[DECODER]
    log_share = np.log(moments.proportion)
    bias = (log_share - log_share.mean()).astype(np.float32)
    log_theta = np.log(np.clip(moments.dispersion, *DISPERSION_RANGE)).astype(np.float32)
    gene_logits = {**decoder["gene_logits"], "bias": bias}
    return {**params, DECODER: {**decoder, "gene_logits": gene_logits, "log_theta": log_theta}}
