"""A simulated Perturb-seq dataset with planted truth (SPEC A8), mirroring the CRADLE model (§1).

Generative story, per cell i with label t (control, a single, or a pair of singles):

    z_i   = z_b,i + s_t,            z_b,i ~ N(0, I_L)
    s_t   = Σ_{singles j in t} m_j ⊙ e_j  (+ w_t, the planted interaction, for some pairs)
    ρ_i   = softmax(b + W^T z_i + κ · V^T tanh(z_i))                 (G,)
    ℓ_i   ~ LogNormal(log ℓ_med, σ_ℓ²)
    x_i   ~ NB(mean ℓ_i ρ_i, inverse dispersion θ_g)                 (Gamma–Poisson)

The QC genes (MT-, RPL/RPS, HB) have no loadings, so a clean cell's QC metrics do not depend on its
perturbation: only the planted artifacts, and the noise tails, fail the MAD rules of §4.2.
Artifacts replace a cell's counts after its clean counts are drawn (same z, same ℓ):
  * damaged: cytoplasmic RNA lost, each non-MT count kept with probability k ~ U(damaged_keep),
    so the mitochondrial share rises several-fold and the depth falls;
  * empty: an ambient droplet, Poisson(ℓ_e · ambient) with ℓ_e far below a cell's depth and the
    population-average profile as `ambient`;
  * doublet: the cell's clean counts plus the clean counts of a random other cell of its block.
The damaged rate is multiplied by `artifact_perturbation_dependence` for cells carrying a "toxic"
single, then rescaled so the overall damaged share stays what the config asks for: this is where
artifacts bias a naive ATE.

The true ATE is on the evaluation scale of §5.2–5.3 at ℓ = 1e4 and computed by Monte Carlo:
`ate_cells` fresh clean cells per label, drawn with common random numbers (the same z_b and the
same standard Gamma draws for every label, fresh Poisson draws per label), so the differences to
control carry far less Monte Carlo noise than independent draws would.

Everything derives from `config.seed` through `host_rng(seed, purpose, ...)`. Counts are drawn in
row blocks of `block_size` cells (the result depends on block_size, which is part of the config);
no dense float64 (N, G) array is ever held.
"""

import os
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cradle_jax.data.errors import DataError
from cradle_jax.data.seeding import host_rng

CONTROL_LABEL = "non-targeting"
SEPARATOR = "+"
ARTIFACT_NAMES: tuple[str, ...] = ("none", "damaged", "empty", "doublet")
NONE, DAMAGED, EMPTY, DOUBLET = range(4)
EVAL_LIBRARY = 1e4  # ℓ of the evaluation scale (SPEC §5.2, E3)

MT_GENES = (
    "MT-ND1", "MT-ND2", "MT-CO1", "MT-CO2", "MT-ATP8", "MT-ATP6", "MT-CO3",
    "MT-ND3", "MT-ND4L", "MT-ND4", "MT-ND5", "MT-ND6", "MT-CYB",
)  # fmt: skip
RIBO_GENES = (
    "RPL3", "RPL4", "RPL5", "RPL6", "RPL7", "RPL7A", "RPL8", "RPL9", "RPL10", "RPL10A",
    "RPL11", "RPL12", "RPL13", "RPL13A", "RPL14", "RPL15", "RPL17", "RPL18", "RPL18A", "RPL19",
    "RPS2", "RPS3", "RPS3A", "RPS4X", "RPS5", "RPS6", "RPS7", "RPS8", "RPS9", "RPS10",
    "RPS11", "RPS12", "RPS13", "RPS14", "RPS15", "RPS15A", "RPS16", "RPS18", "RPS19", "RPS20",
)  # fmt: skip
HB_GENES = ("HBA1", "HBA2", "HBB", "HBD", "HBG1", "HBG2")
MIN_OTHER_GENES = 41
MIN_GENES = len(MT_GENES) + len(RIBO_GENES) + len(HB_GENES) + MIN_OTHER_GENES  # 100
_CALIBRATION_CELLS = 4096  # z_b draws that calibrate the gene baselines and the ambient profile
_ATE_CHUNK_ELEMENTS = 4_000_000  # Monte Carlo cells x genes drawn at once


@dataclass(frozen=True)
class SimulationConfig:
    """All knobs of the simulator; validated on construction (DataError naming the field)."""

    n_cells: int = 10_000
    n_genes: int = 1_000
    n_perturbations: int = 20  # singles T
    n_pairs: int = 10
    n_latent: int = 10
    control_fraction: float = 0.1
    artifact_fraction: float = 0.1
    artifact_perturbation_dependence: float = 3.0  # damaged-rate multiplier for toxic singles
    interaction_fraction: float = 0.3  # share of pairs with a planted non-additive interaction
    seed: int = 0
    toxic_fraction: float = 0.25  # share of singles that are toxic (at least one if > 0)
    damaged_share: float = 0.5  # the artifact types' shares of artifact_fraction (sum to 1)
    empty_share: float = 0.25
    doublet_share: float = 0.25
    effect_size: float = 2.0  # |m ⊙ e| on an active dim is effect_size · U(0.75, 1.5)
    loading_scale: float = 0.4  # std of a non-zero decoder loading
    loading_density: float = 0.1  # share of genes loading on each latent dim
    decoder_nonlinearity: float = 0.5  # κ, weight of the tanh hidden layer
    mt_share: float = 0.05  # expected share of counts per gene class in a clean cell
    ribo_share: float = 0.2
    hb_share: float = 5e-6
    expression_spread: float = 1.5  # std of log baseline expression across other genes
    theta_median: float = 8.0  # NB inverse dispersion; MT/ribo genes get 4x (less noisy)
    library_median: float = 3000.0
    library_sigma: float = 0.35
    damaged_keep: tuple[float, float] = (0.05, 0.3)  # range of a damaged cell's non-MT kept share
    empty_library_fraction: float = 0.05  # median depth of an empty droplet / library_median
    ate_cells: int = 2000  # Monte Carlo clean cells per label for the true ATE
    block_size: int = 5000  # cells per generated row block

    def __post_init__(self) -> None:
        if isinstance(self.damaged_keep, list):  # as read back from JSON
            object.__setattr__(self, "damaged_keep", tuple(self.damaged_keep))
        self.validate()

    def validate(self) -> None:
        """Raise DataError naming the first field that cannot be simulated."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise DataError(f"simulation config: {f.name} must be an integer, got {value!r}")
            if f.type is float and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not np.isfinite(value)
            ):
                raise DataError(
                    f"simulation config: {f.name} must be a finite number, got {value!r}"
                )
        for name in ("n_cells", "n_perturbations", "n_latent", "ate_cells", "block_size"):
            _require(getattr(self, name) >= 1, name, "must be >= 1")
        _require(self.n_pairs >= 0, "n_pairs", "must be >= 0")
        _require(self.seed >= 0, "seed", "must be >= 0")
        max_pairs = self.n_perturbations * (self.n_perturbations - 1) // 2
        _require(
            self.n_pairs <= max_pairs,
            "n_pairs",
            f"exceeds the {max_pairs} distinct pairs of n_perturbations={self.n_perturbations}",
        )
        _require(
            self.n_genes >= MIN_GENES,
            "n_genes",
            f"is too small: need >= {MIN_GENES} ({len(MT_GENES)} MT-, {len(RIBO_GENES)} "
            f"RPL/RPS, {len(HB_GENES)} HB genes and {MIN_OTHER_GENES} others)",
        )
        _require(0 < self.control_fraction < 1, "control_fraction", "must lie in (0, 1)")
        _require(0 <= self.artifact_fraction < 1, "artifact_fraction", "must lie in [0, 1)")
        for name in ("toxic_fraction", "interaction_fraction"):
            _require(0 <= getattr(self, name) <= 1, name, "must lie in [0, 1]")
        shares = (self.damaged_share, self.empty_share, self.doublet_share)
        _require(min(shares) >= 0, "damaged_share", "damaged/empty/doublet shares must be >= 0")
        _require(
            abs(sum(shares) - 1) < 1e-6,
            "damaged_share",
            f"damaged_share + empty_share + doublet_share must be 1, got {sum(shares):g}",
        )
        _require(
            self.artifact_perturbation_dependence > 0,
            "artifact_perturbation_dependence",
            "must be > 0 (1 = artifacts independent of the perturbation)",
        )
        for name in ("effect_size", "loading_scale", "decoder_nonlinearity", "expression_spread"):
            _require(getattr(self, name) >= 0, name, "must be >= 0")
        for name in ("theta_median", "library_median", "empty_library_fraction", "hb_share"):
            _require(getattr(self, name) > 0, name, "must be > 0")
        _require(self.library_sigma >= 0, "library_sigma", "must be >= 0")
        _require(0 < self.loading_density <= 1, "loading_density", "must lie in (0, 1]")
        _require(self.mt_share > 0 and self.ribo_share > 0, "mt_share", "MT and ribo shares > 0")
        _require(
            self.mt_share + self.ribo_share + self.hb_share < 1,
            "mt_share",
            "mt_share + ribo_share + hb_share must be < 1",
        )
        keep = self.damaged_keep
        _require(
            len(keep) == 2 and 0 < keep[0] <= keep[1] < 1,
            "damaged_keep",
            f"must be (low, high) with 0 < low <= high < 1, got {keep!r}",
        )
        n_control = self.n_control_cells
        _require(n_control >= 1, "n_cells", "too small to hold one control cell")
        _require(
            self.n_cells - n_control >= self.n_labels - 1,
            "n_cells",
            f"={self.n_cells} is too small for {self.n_labels - 1} perturbation labels",
        )

    @property
    def n_labels(self) -> int:
        """Control, the singles and the pairs."""
        return 1 + self.n_perturbations + self.n_pairs

    @property
    def n_control_cells(self) -> int:
        return round(self.control_fraction * self.n_cells)

    def to_dict(self) -> dict:
        """JSON-able (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _require(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise DataError(f"simulation config: {field} {message}")


@dataclass(frozen=True)
class Simulation:
    """The simulated AnnData (raw counts, CSR float32) and its planted truth."""

    adata: ad.AnnData
    truth: dict[str, np.ndarray]


@dataclass(frozen=True)
class _Design:
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
        return _softmax(self.logits(z))

    def logits(self, z: np.ndarray) -> np.ndarray:
        z = z.astype(np.float32, copy=False)
        out = z @ self.loadings
        out += self.nonlinearity * (np.tanh(z) @ self.nonlinear_loadings)
        out += self.baseline
        return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def _make_design(config: SimulationConfig) -> _Design:
    """Genes, decoder, perturbations; then b calibrated and the ambient profile derived."""
    rng = host_rng(config.seed, "simulate/design")
    genes = _genes_and_decoder(config, rng)
    perturbations = _perturbations(config, rng)
    design = _Design(**genes, **perturbations, ambient=np.zeros(config.n_genes))

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
        dims = rng.choice(L, size=rng.integers(1, min(3, L) + 1), replace=False)
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


@dataclass(frozen=True)
class _Cells:
    """Per-cell draws that do not need the counts: (N,) arrays unless noted."""

    label: np.ndarray  # int32 index into design.labels
    z_basal: np.ndarray  # (N, L) float32
    library: np.ndarray  # float64, ℓ
    artifact: np.ndarray  # int8 code into ARTIFACT_NAMES
    keep: np.ndarray  # float64, non-MT kept share if damaged
    empty_library: np.ndarray  # float64, depth if empty


def _draw_cells(config: SimulationConfig, design: _Design) -> _Cells:
    rng = host_rng(config.seed, "simulate/cells")
    N, n_labels = config.n_cells, design.labels.size
    counts = np.zeros(n_labels, np.int64)
    counts[0] = config.n_control_cells
    if n_labels > 1:
        rest = N - counts[0]
        counts[1:] = rest // (n_labels - 1)
        counts[1 + rng.choice(n_labels - 1, size=rest % (n_labels - 1), replace=False)] += 1
    label = rng.permutation(np.repeat(np.arange(n_labels, dtype=np.int32), counts))
    z_basal = rng.standard_normal((N, config.n_latent), dtype=np.float32)
    library = np.exp(np.log(config.library_median) + config.library_sigma * rng.standard_normal(N))

    p_empty = config.artifact_fraction * config.empty_share
    p_doublet = config.artifact_fraction * config.doublet_share
    multiplier = np.where(design.label_toxic[label], config.artifact_perturbation_dependence, 1.0)
    p_damaged = config.artifact_fraction * config.damaged_share * multiplier / multiplier.mean()
    p_damaged = np.minimum(p_damaged, 1 - p_empty - p_doublet)  # only bites at extreme settings
    u = rng.random(N)
    artifact = np.full(N, NONE, np.int8)
    artifact[u < p_damaged + p_empty + p_doublet] = DOUBLET
    artifact[u < p_damaged + p_empty] = EMPTY
    artifact[u < p_damaged] = DAMAGED
    keep = rng.uniform(*config.damaged_keep, size=N)
    empty_median = config.empty_library_fraction * config.library_median
    empty_library = np.exp(np.log(empty_median) + 0.5 * rng.standard_normal(N))
    return _Cells(label, z_basal, library, artifact, keep, empty_library)


@dataclass
class _Block:
    observed: sp.csr_matrix  # (B, G) float32
    clean: sp.csr_matrix  # (artifact rows of the block, G) float32
    partner: np.ndarray  # (B,) int64 global partner index, -1 if not a doublet


def _generate_block(
    config: SimulationConfig, design: _Design, cells: _Cells, index: int, start: int, stop: int
) -> _Block:
    rng = host_rng(config.seed, "simulate/counts", index)
    z = cells.z_basal[start:stop] + design.latent_shift[cells.label[start:stop]]
    mean = design.rho(z) * cells.library[start:stop, None].astype(np.float32)
    clean = _gamma_poisson(rng, mean, design.theta)

    artifact = cells.artifact[start:stop]
    n_block = stop - start
    observed = clean.copy()
    # Every replacement reads only `clean`, so the order of the three kinds does not matter.
    damaged = np.flatnonzero(artifact == DAMAGED)
    non_mt = design.gene_class != "mt"
    kept = rng.binomial(clean[np.ix_(damaged, non_mt)], cells.keep[start + damaged, None])
    observed[np.ix_(damaged, non_mt)] = kept
    empty = np.flatnonzero(artifact == EMPTY)
    observed[empty] = rng.poisson(cells.empty_library[start + empty, None] * design.ambient)
    doublet = np.flatnonzero(artifact == DOUBLET)
    partner = np.full(n_block, -1, np.int64)
    if n_block > 1:
        other = rng.integers(0, n_block - 1, size=doublet.size)
        other += other >= doublet  # any cell of the block but itself
        observed[doublet] = clean[doublet] + clean[other]
        partner[doublet] = start + other
    elif doublet.size:  # a one-cell block (block_size=1) has no other cell to pair with
        observed[doublet] = 2 * clean[doublet]
        partner[doublet] = start + doublet

    is_artifact = artifact != NONE
    return _Block(
        observed=sp.csr_matrix(observed.astype(np.float32)),
        clean=sp.csr_matrix(clean[is_artifact].astype(np.float32)),
        partner=partner,
    )


def _gamma_poisson(rng: np.random.Generator, mean: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """NB(mean, θ) counts as Poisson(mean · Gamma(θ, 1) / θ): (B, G) float32 -> (B, G) int64."""
    gamma = rng.standard_gamma(theta, size=mean.shape, dtype=np.float32)
    gamma *= mean
    gamma /= theta
    return rng.poisson(gamma)


def _stack_csr(blocks: list[sp.csr_matrix], n_cols: int) -> sp.csr_matrix:
    """Row-stack CSR blocks without holding two full copies of every array at once."""
    nnz = [b.nnz for b in blocks]
    indptr = np.zeros(sum(b.shape[0] for b in blocks) + 1, np.int64)
    row = 0
    for b, offset in zip(blocks, np.cumsum([0, *nnz[:-1]]), strict=True):
        indptr[row + 1 : row + b.shape[0] + 1] = b.indptr[1:] + offset
        row += b.shape[0]
    data = np.concatenate([b.data for b in blocks]).astype(np.float32, copy=False)
    for b in blocks:
        b.data = np.empty(0, np.float32)
    indices = np.concatenate([b.indices for b in blocks]).astype(np.int32, copy=False)
    blocks.clear()
    return sp.csr_matrix((data, indices, indptr), shape=(row, n_cols))


def _true_ate(config: SimulationConfig, design: _Design) -> tuple[np.ndarray, np.ndarray]:
    """E[log2(1 + 1e4 x / Σx)] per label for clean cells at ℓ = 1e4, and minus control's.

    Monte Carlo over `ate_cells` cells per label with common random numbers across labels.
    Returns (n_labels, G) float64 means and (n_labels, G) float32 ATE (control row 0).
    """
    rng = host_rng(config.seed, "simulate/ate")
    S, G = config.ate_cells, config.n_genes
    chunk = max(1, min(S, _ATE_CHUNK_ELEMENTS // G))
    sums = np.zeros((design.labels.size, G))
    for start in range(0, S, chunk):
        n = min(chunk, S - start)
        z_basal = rng.standard_normal((n, config.n_latent), dtype=np.float32)
        gamma = rng.standard_gamma(design.theta, size=(n, G), dtype=np.float32) / design.theta
        for k, shift in enumerate(design.latent_shift):
            rate = design.rho(z_basal + shift) * np.float32(EVAL_LIBRARY) * gamma
            x = rng.poisson(rate).astype(np.float64)
            sums[k] += np.log2(1 + EVAL_LIBRARY * x / x.sum(axis=1, keepdims=True)).sum(axis=0)
    means = sums / S
    return means, (means - means[0]).astype(np.float32)


def _top_genes(ate: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest |ATE| per label; ties keep gene order (stable sort)."""
    return np.argsort(-np.abs(ate), axis=1, kind="stable")[:, : min(k, ate.shape[1])].astype(
        np.int32
    )


def simulate(config: SimulationConfig) -> Simulation:
    """Draw a dataset and its planted truth from `config` (deterministic in config.seed).

    Non-artifact cells have X equal to their clean counts and are absent from the clean_* arrays
    of the truth by design; artifact cell `truth["clean_rows"][r]` has clean counts in row r of
    the CSR matrix (clean_data, clean_indices, clean_indptr).
    """
    config.validate()
    design = _make_design(config)
    cells = _draw_cells(config, design)
    N, G = config.n_cells, config.n_genes

    observed, clean, partners = [], [], []
    for index, start in enumerate(range(0, N, config.block_size)):
        block = _generate_block(
            config, design, cells, index, start, min(start + config.block_size, N)
        )
        observed.append(block.observed)
        clean.append(block.clean)
        partners.append(block.partner)
    X = _stack_csr(observed, G)
    clean_X = _stack_csr(clean, G)

    eval_mean, ate = _true_ate(config, design)
    names = np.array(ARTIFACT_NAMES)
    artifact_counts = {
        name: int((cells.artifact == code).sum()) for code, name in enumerate(ARTIFACT_NAMES)
    }
    truth = {
        "labels": design.labels,
        "singles": design.singles,
        "pairs": design.pairs,
        "true_ate": ate,
        "true_eval_mean": eval_mean.astype(np.float32),
        "de_genes_top20": _top_genes(ate, 20),
        "de_genes_top50": _top_genes(ate, 50),
        "mask": design.mask,
        "embedding": design.embedding,
        "interaction": design.interaction,
        "has_interaction": design.has_interaction,
        "latent_shift": design.latent_shift,
        "is_toxic": design.is_toxic,
        "label_toxic": design.label_toxic,
        "loadings": design.loadings,
        "nonlinear_loadings": design.nonlinear_loadings,
        "decoder_nonlinearity": np.float32(design.nonlinearity),
        "baseline": design.baseline,
        "theta": design.theta,
        "ambient": design.ambient.astype(np.float32),
        "gene_class": design.gene_class,
        "cell_label": cells.label,
        "z_basal": cells.z_basal,
        "library": cells.library.astype(np.float32),
        "artifact": cells.artifact,
        "artifact_names": names,
        "doublet_partner": np.concatenate(partners),
        "clean_rows": np.flatnonzero(cells.artifact != NONE).astype(np.int64),
        "clean_data": clean_X.data,
        "clean_indices": clean_X.indices,
        "clean_indptr": clean_X.indptr.astype(np.int64),
    }

    pair_labels = design.labels[1 + config.n_perturbations :]
    width = len(str(N - 1))
    obs = pd.DataFrame(
        {
            "perturbation": pd.Categorical.from_codes(cells.label, categories=design.labels),
            "artifact": pd.Categorical.from_codes(cells.artifact, categories=names),
            "is_artifact": cells.artifact != NONE,
        },
        index=pd.Index([f"cell{i:0{width}d}" for i in range(N)]),
    )
    var = pd.DataFrame(
        {"gene_class": pd.Categorical(design.gene_class)}, index=pd.Index(design.gene_names)
    )
    uns = {
        "simulation": {
            "config": config.to_dict(),
            "labels": design.labels.tolist(),
            "control_label": CONTROL_LABEL,
            "separator": SEPARATOR,
            "toxic_perturbations": design.singles[design.is_toxic].tolist(),
            "interacting_pairs": pair_labels[design.has_interaction].tolist(),
            "artifact_counts": artifact_counts,
            "true_ate": f"Monte Carlo, {config.ate_cells} clean cells per label at library 1e4, "
            "common random numbers across labels",
            "truth_file": "",
        }
    }
    adata = ad.AnnData(X=X, obs=obs, var=var, uns=uns)
    return Simulation(adata=adata, truth=truth)


def clean_counts(truth: dict[str, np.ndarray], n_genes: int) -> sp.csr_matrix:
    """The clean counts of the artifact cells, (len(truth["clean_rows"]), G) CSR float32."""
    shape = (truth["clean_rows"].size, n_genes)
    return sp.csr_matrix(
        (truth["clean_data"], truth["clean_indices"], truth["clean_indptr"]), shape=shape
    )


def write_simulation(sim: Simulation, out_path: str | os.PathLike) -> tuple[Path, Path]:
    """Write `out_path` (.h5ad) and `<stem>.truth.npz` beside it, each atomically.

    Both go to temporary files in the target directory first and are renamed into place only
    when both are complete; on any error the temporaries are removed and the error re-raised.
    Records the truth file's name in sim.adata.uns["simulation"]["truth_file"].
    """
    path = Path(out_path)
    if path.suffix != ".h5ad":
        raise DataError(f"simulation output {str(path)!r} must end in .h5ad")
    if path.is_dir():
        raise DataError(f"simulation output {str(path)!r} is a directory")
    truth_path = path.with_name(f"{path.stem}.truth.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    sim.adata.uns.setdefault("simulation", {})["truth_file"] = truth_path.name

    umask = os.umask(0)
    os.umask(umask)
    temporaries: list[Path] = []
    try:
        for target in (path, truth_path):
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{target.name}.", suffix=".tmp")
            os.close(fd)
            temporaries.append(Path(name))
            os.chmod(name, 0o666 & ~umask)  # mkstemp makes 0600; the results are ordinary files
        tmp_data, tmp_truth = temporaries
        sim.adata.write_h5ad(tmp_data)
        with open(tmp_truth, "wb") as handle:
            np.savez(handle, **sim.truth)
        os.replace(tmp_truth, truth_path)
        try:
            os.replace(tmp_data, path)
        except BaseException:
            truth_path.unlink(missing_ok=True)  # never leave a truth file without its data
            raise
    except BaseException:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)
        raise
    return path, truth_path


def load_truth(npz_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The truth arrays written by write_simulation."""
    path = Path(npz_path)
    if not path.is_file():
        raise DataError(f"simulation truth file {str(path)!r} not found")
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}
