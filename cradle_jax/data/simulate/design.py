"""The fixed parts of the simulated generative model: genes, decoder, perturbations, ambient."""

from dataclasses import dataclass, replace

import numpy as np

from cradle_jax.data.seeding import host_rng
from cradle_jax.data.simulate.config import (
    CONTROL_LABEL,
    HB_GENES,
    MT_GENES,
    RIBO_GENES,
    SEPARATOR,
    SimulationConfig,
)

_CALIBRATION_CELLS = 4096  # z_b draws that calibrate the gene baselines and the ambient profile


@dataclass(frozen=True)
class Design:
    """The fixed parts of the generative model (independent of n_cells)."""

    gene_names: np.ndarray  # (G,) str
    gene_class: np.ndarray  # (G,) str: mt, ribo, hb, other
    baseline: np.ndarray  # (G,) float32, b
    loadings: np.ndarray  # (L, G) float32, W
    nonlinear_loadings: np.ndarray  # (L, G) float32, V, same support as W
    nonlinearity: float  # κ
    theta: np.ndarray  # (G,) float32
    singles: np.ndarray  # (T,) str
    mask: np.ndarray  # (T, L) uint8
    embedding: np.ndarray  # (T, L) float32, zero off the mask
    pairs: np.ndarray  # (n_pairs, 2) int32 indices into singles, a < b
    interaction: np.ndarray  # (n_pairs, L) float32, zero rows for additive pairs
    has_interaction: np.ndarray  # (n_pairs,) bool
    is_toxic: np.ndarray  # (T,) bool
    labels: np.ndarray  # (n_labels,) str: control, singles, pairs
    latent_shift: np.ndarray  # (n_labels, L) float32, s_t
    label_toxic: np.ndarray  # (n_labels,) bool: the label carries a toxic single
    ambient: np.ndarray  # (G,) float64, population-average expression profile

    def rho(self, z: np.ndarray) -> np.ndarray:
        """Expression profiles softmax(b + W^T z + κ V^T tanh(z)): (B, L) -> (B, G) float32."""
        return softmax(self.logits(z))

    def logits(self, z: np.ndarray) -> np.ndarray:
        z = z.astype(np.float32, copy=False)
        out = z @ self.loadings
        out += self.nonlinearity * (np.tanh(z) @ self.nonlinear_loadings)
        out += self.baseline
        return out


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def make_design(config: SimulationConfig) -> Design:
    """Genes, decoder, perturbations; then b calibrated and the ambient profile derived."""
    rng = host_rng(config.seed, "simulate/design")
    genes = _genes_and_decoder(config, rng)
    perturbations = _perturbations(config, rng)
    design = Design(**genes, **perturbations, ambient=np.zeros(config.n_genes))

    # Shift b so that E_zb[exp(logit_g)] is the planned share: the class shares then hold on
    # average over control cells instead of drifting with the loadings' variance.
    z_cal = rng.standard_normal((_CALIBRATION_CELLS, config.n_latent)).astype(np.float32)
    unshifted = (design.logits(z_cal) - design.baseline).astype(np.float64)
    offset = np.log(np.exp(unshifted).mean(axis=0))
    design = replace(design, baseline=(design.baseline - offset).astype(np.float32))

    # Ambient RNA: the average profile of the cell population, labels in their planned shares.
    n_labels = design.labels.size
    weights = np.full(n_labels, (1 - config.control_fraction) / max(n_labels - 1, 1))
    weights[0] = config.control_fraction if n_labels > 1 else 1.0
    cal_labels = rng.choice(n_labels, size=_CALIBRATION_CELLS, p=weights / weights.sum())
    ambient = design.rho(z_cal + design.latent_shift[cal_labels]).astype(np.float64).mean(axis=0)
    return replace(design, ambient=ambient / ambient.sum())


def _genes_and_decoder(config: SimulationConfig, rng: np.random.Generator) -> dict:
    """Gene symbols and classes, uncalibrated baseline b, loadings W and V, dispersions θ."""
    L, G = config.n_latent, config.n_genes
    n_other = G - len(MT_GENES) - len(RIBO_GENES) - len(HB_GENES)
    width = max(4, len(str(n_other)))
    other = [f"GENE{i + 1:0{width}d}" for i in range(n_other)]
    gene_class = np.repeat(
        ["mt", "ribo", "hb", "other"], [len(MT_GENES), len(RIBO_GENES), len(HB_GENES), n_other]
    )
    is_other = gene_class == "other"

    # Sparse loadings on the other genes only (QC genes stay perturbation-independent); the tanh
    # term shares W's support, so a perturbation moves only the genes of its latent dims.
    support = (rng.random((L, G)) < config.loading_density) & is_other
    loadings = np.where(support, config.loading_scale * rng.standard_normal((L, G)), 0)
    nonlinear = np.where(support, config.loading_scale * rng.standard_normal((L, G)), 0)

    # Log-normal profiles within each class, scaled to the class's expected share of counts.
    log_share = np.empty(G)
    spreads = {"mt": 0.7, "ribo": 0.7, "hb": 0.5, "other": config.expression_spread}
    totals = {
        "mt": config.mt_share,
        "ribo": config.ribo_share,
        "hb": config.hb_share,
        "other": 1 - config.mt_share - config.ribo_share - config.hb_share,
    }
    for name, spread in spreads.items():
        sel = gene_class == name
        raw = spread * rng.standard_normal(sel.sum())
        log_share[sel] = np.log(totals[name]) + raw - np.logaddexp.reduce(raw)
    theta = config.theta_median * np.exp(0.5 * rng.standard_normal(G))
    theta[~is_other] *= 4  # highly expressed housekeeping classes: less overdispersed
    return {
        "gene_names": np.array([*MT_GENES, *RIBO_GENES, *HB_GENES, *other]),
        "gene_class": gene_class,
        "baseline": log_share.astype(np.float32),
        "loadings": loadings.astype(np.float32),
        "nonlinear_loadings": nonlinear.astype(np.float32),
        "nonlinearity": float(config.decoder_nonlinearity),
        "theta": theta.astype(np.float32),
    }


def _perturbations(config: SimulationConfig, rng: np.random.Generator) -> dict:
    """Singles with masks and embeddings, pairs with interactions, toxic singles, label shifts."""
    L, T = config.n_latent, config.n_perturbations
    width = max(2, len(str(T)))
    singles = np.array([f"PERT{j + 1:0{width}d}" for j in range(T)])
    mask = np.zeros((T, L), np.uint8)
    embedding = np.zeros((T, L), np.float32)
    for j in range(T):
        n_dims = rng.integers(1, min(config.max_mask_dims, L) + 1)
        dims = rng.choice(L, size=n_dims, replace=False)
        mask[j, dims] = 1
        magnitude = config.effect_size * rng.uniform(0.75, 1.5, size=dims.size)
        embedding[j, dims] = rng.choice([-1.0, 1.0], size=dims.size) * magnitude

    first, second = np.triu_indices(T, k=1)
    chosen = np.sort(rng.choice(first.size, size=config.n_pairs, replace=False))
    pairs = np.stack([first[chosen], second[chosen]], axis=1).astype(np.int32)
    has_interaction = np.zeros(config.n_pairs, bool)
    n_interacting = round(config.interaction_fraction * config.n_pairs)
    has_interaction[rng.choice(config.n_pairs, size=n_interacting, replace=False)] = True
    interaction = np.zeros((config.n_pairs, L), np.float32)
    for p in np.flatnonzero(has_interaction):
        dims = rng.choice(L, size=rng.integers(1, min(2, L) + 1), replace=False)
        magnitude = config.effect_size * rng.uniform(0.5, 1.0, size=dims.size)
        interaction[p, dims] = rng.choice([-1.0, 1.0], size=dims.size) * magnitude

    n_toxic = round(config.toxic_fraction * T)
    n_toxic = max(n_toxic, 1) if config.toxic_fraction > 0 else 0
    is_toxic = np.zeros(T, bool)
    is_toxic[rng.choice(T, size=n_toxic, replace=False)] = True

    effect = mask * embedding
    pair_labels = [SEPARATOR.join(singles[p]) for p in pairs]
    latent_shift = np.concatenate(
        [np.zeros((1, L), np.float32), effect, effect[pairs].sum(axis=1) + interaction]
    )
    return {
        "singles": singles,
        "mask": mask,
        "embedding": embedding,
        "pairs": pairs,
        "interaction": interaction,
        "has_interaction": has_interaction,
        "is_toxic": is_toxic,
        "labels": np.array([CONTROL_LABEL, *singles, *pair_labels]),
        "latent_shift": latent_shift.astype(np.float32),
        "label_toxic": np.concatenate([[False], is_toxic, is_toxic[pairs].any(axis=1)]),
    }
