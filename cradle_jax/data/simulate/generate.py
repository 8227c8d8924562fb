"""Cells, counts with planted artifacts, and the true ATE: `simulate(config)`."""

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cradle_jax.config import EVAL_LIBRARY
from cradle_jax.data.seeding import host_rng
from cradle_jax.data.simulate.config import (
    ARTIFACT_NAMES,
    CONTROL_LABEL,
    DAMAGED,
    DOUBLET,
    EMPTY,
    NONE,
    PERTURBATION_KEY,
    SEPARATOR,
    SimulationConfig,
)
from cradle_jax.data.simulate.design import Design, make_design

_ATE_CHUNK_ELEMENTS = 4_000_000  # Monte Carlo cells x genes drawn at once


@dataclass(frozen=True)
class Simulation:
    """The simulated AnnData (raw counts, CSR float32) and its planted truth."""

    adata: ad.AnnData
    truth: dict[str, np.ndarray]


@dataclass(frozen=True)
class _Cells:
    """Per-cell draws that do not need the counts: (N,) arrays unless noted."""

    label: np.ndarray  # int32 index into design.labels
    z_basal: np.ndarray  # (N, L) float32
    library: np.ndarray  # float64, ℓ
    artifact: np.ndarray  # int8 code into ARTIFACT_NAMES
    keep: np.ndarray  # float64, non-MT kept share if damaged
    empty_library: np.ndarray  # float64, depth if empty


def _draw_cells(config: SimulationConfig, design: Design) -> _Cells:
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
    config: SimulationConfig, design: Design, cells: _Cells, index: int, start: int, stop: int
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


def _true_ate(config: SimulationConfig, design: Design) -> tuple[np.ndarray, np.ndarray]:
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
    design = make_design(config)
    cells = _draw_cells(config, design)
    X, clean_X, partner = _generate_counts(config, design, cells)
    eval_mean, ate = _true_ate(config, design)
    truth = _truth(design, cells, clean_X, partner, eval_mean, ate)
    return Simulation(adata=_annotated(config, design, cells, X), truth=truth)


def _generate_counts(
    config: SimulationConfig, design: Design, cells: _Cells
) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """The observed counts (N, G), the clean counts of the artifact cells (their rows in cell
    order) and each cell's doublet partner (N,), generated block by block of `block_size` cells.
    """
    N, G = config.n_cells, config.n_genes
    observed, clean, partners = [], [], []
    for index, start in enumerate(range(0, N, config.block_size)):
        block = _generate_block(
            config, design, cells, index, start, min(start + config.block_size, N)
        )
        observed.append(block.observed)
        clean.append(block.clean)
        partners.append(block.partner)
    return _stack_csr(observed, G), _stack_csr(clean, G), np.concatenate(partners)


def _truth(
    design: Design,
    cells: _Cells,
    clean_X: sp.csr_matrix,
    partner: np.ndarray,
    eval_mean: np.ndarray,
    ate: np.ndarray,
) -> dict[str, np.ndarray]:
    """Everything planted, as arrays: the design, each cell's draws, the true ATE and its top
    genes, and the clean counts of the artifact cells (rows `clean_rows`)."""
    return {
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
        "artifact_names": np.array(ARTIFACT_NAMES),
        "doublet_partner": partner,
        "clean_rows": np.flatnonzero(cells.artifact != NONE).astype(np.int64),
        "clean_data": clean_X.data,
        "clean_indices": clean_X.indices,
        "clean_indptr": clean_X.indptr.astype(np.int64),
    }


def _annotated(
    config: SimulationConfig, design: Design, cells: _Cells, X: sp.csr_matrix
) -> ad.AnnData:
    """The counts as the data contract's AnnData: each cell's label and artifact in obs, the
    gene classes in var, and a JSON-able summary of the simulation in uns."""
    N = config.n_cells
    names = np.array(ARTIFACT_NAMES)
    artifact_counts = {
        name: int((cells.artifact == code).sum()) for code, name in enumerate(ARTIFACT_NAMES)
    }
    pair_labels = design.labels[1 + config.n_perturbations :]
    width = len(str(N - 1))
    obs = pd.DataFrame(
        {
            PERTURBATION_KEY: pd.Categorical.from_codes(cells.label, categories=design.labels),
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
    return ad.AnnData(X=X, obs=obs, var=var, uns=uns)
