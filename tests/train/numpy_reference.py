"""Independent float64 NumPy versions of the networks and log-densities
(docs/method.md#networks, docs/method.md#cradle-guide): the reference side of the by-hand
objective tests. Networks are evaluated from their raw parameter dicts; the negative binomial
uses `scipy.special.gammaln`.
"""

import jax
import numpy as np
from scipy.special import gammaln, log_expit, logsumexp


def f64(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def leaky(x):
    return np.where(x >= 0, x, 0.01 * x)


def linear(p, x):
    return x @ p["kernel"] + p["bias"]


def trunk(p, x):
    """layer 0: σ(W₀x + b₀); layer i ≥ 1: σ(Wᵢh + bᵢ) + h (skip after the activation)."""
    n_layers = len(p)
    h = leaky(linear(p["layer_0"], x))
    for i in range(1, n_layers):
        h = leaky(linear(p[f"layer_{i}"], h)) + h
    return h


def sanitize(x):
    return np.nan_to_num(x, nan=1e-6, posinf=1e6, neginf=1e-6)


def normal_head(p, x):
    """(μ, σ): μ = W_μh + b_μ, σ = √v with v = |exp(W_vh + b_v) + 1e-4|, both sanitised."""
    h = trunk(p["trunk"], x)
    loc = sanitize(linear(p["loc"], h))
    v = sanitize(np.abs(np.exp(linear(p["log_variance"], h)) + 1e-4))
    return loc, np.sqrt(v)


def normal_logpdf(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi)


def bernoulli_logpmf(m, logits):
    return m * log_expit(logits) + (1 - m) * log_expit(-logits)


def decoder_logpmf(p, u, x, library, likelihood, log_theta_shift=0.0, skip_input=None):
    """log p(x | u) per (P, B, G) for the `library_nb` or `poisson` head; `log_theta_shift`
    (broadcastable to (B, G)) is added to each cell's log dispersion; a decoder with a `skip`
    layer adds its linear map of `skip_input` (u's perturbation part) to the trunk's output."""
    h = trunk(p["trunk"], u)
    if "skip" in p:
        h = h + linear(p["skip"], skip_input)
    if likelihood == "poisson":
        rate = np.maximum(np.logaddexp(0.0, linear(p["rate"], h)), 1e-6)
        return x * np.log(rate) - rate - gammaln(x + 1)
    assert likelihood == "library_nb"
    logits = linear(p["gene_logits"], h)
    rho = np.exp(logits - logsumexp(logits, axis=-1, keepdims=True))
    mu = library[None, :, None] * rho
    theta = np.exp(p["log_theta"] + log_theta_shift)
    r = np.maximum(theta / (mu + 1e-4), 1e-6)
    return (
        gammaln(x + theta)
        - gammaln(theta)
        - gammaln(x + 1)
        + theta * np.log(r)
        - (x + theta) * np.log1p(r)
    )


def log_standardize(x, mean, std):
    return sanitize((np.log1p(x) - mean) / np.where(std == 0, 1.0, std))
