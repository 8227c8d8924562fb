"""The QC pass rate of generated cells at the depth of the real cells, and at ℓ = 10⁴
(docs/metrics.md#qc-pass-rate, docs/metrics.md#library-size-caveat).

The real data's QC thresholds on UMI_count and ngenes come from real cells, so generated cells
are judged fairly only at the real cells' depth: on a screen whose median library is 184 counts,
cells generated at ℓ = 10⁴ pass the depth rules whatever the model and show 10,000 UMIs beside
the real 184 in the violins. The headline rate generates each cell with a library size drawn
from the real QC-pass cells of the headline split (deterministic in the seed); the rate at
ℓ = 10⁴ is kept beside it, as the figure comparable with the paper's.
"""

import ml_collections
import numpy as np
import pandas as pd

from cradle_jax.config import EVAL_LIBRARY
from cradle_jax.data.dataset import PerturbData
from cradle_jax.data.splits import SPLIT_CODES
from cradle_jax.evaluate.generation.prior import generate_cells
from cradle_jax.evaluate.scores.qc_rate import score_generated_cells
from cradle_jax.train.bundle import ModelBundle
from cradle_jax.train.keys import purpose_key

PAPER_LABEL = "at library 1e4 (paper-comparable)"


def real_depths(data: PerturbData, split: str) -> np.ndarray:
    """(n,) float32 library sizes of the QC-pass cells with counts of `split` ("all": every
    cell), which generated cells draw their depth from; all QC-pass cells if the split has none."""
    passing = (data.qc.max(axis=1) == 0) & (data.library_size > 0)
    in_split = passing if split == "all" else passing & (data.split == SPLIT_CODES[split])
    return data.library_size[in_split if in_split.any() else passing].astype(np.float32)


def generated_qc(
    bundle: ModelBundle,
    labels: list[str],
    library: float | np.ndarray,
    eval_cfg: ml_collections.ConfigDict,
    *,
    seed: int,
    purpose: str,
) -> tuple[pd.DataFrame, dict, float]:
    """Generate `eval.qc_cells` per label at `library` (a number, or sizes each cell draws
    from): their QC metrics (with `perturbation`), their pass rates, and their median total."""
    n_cells = eval_cfg.qc_cells
    dosage = bundle.vocabulary.dosage(labels).toarray()
    cells = generate_cells(
        bundle.params, bundle.cfg, dosage, n_cells, purpose_key(seed, purpose),
        library=library, chunk=eval_cfg.ate_chunk,
    )  # fmt: skip
    counts = cells.reshape(-1, cells.shape[-1])
    cell_labels = np.repeat(np.asarray(labels, dtype=object), n_cells)
    metrics, rates = score_generated_cells(
        counts, cell_labels, bundle.gene_names, bundle.qc_thresholds,
        seed=seed, doublets=eval_cfg.qc_doublets,
    )  # fmt: skip
    median = float(np.median(counts.sum(axis=1)))
    return metrics.table.assign(perturbation=cell_labels), rates, median


def qc_results(
    bundle: ModelBundle,
    labels: list[str],
    depths: np.ndarray | None,
    real_median: float,
    split: str,
    eval_cfg: ml_collections.ConfigDict,
    *,
    seed: int,
) -> tuple[dict, pd.DataFrame]:
    """The `qc` section of metrics.json: pass rates of cells generated at the real depth
    (`depth_matched`) and at ℓ = 10⁴ (`library_1e4`), and how the depth was chosen; also the
    QC metrics of the depth-matched cells, for the violins. `depths` are the real library
    sizes to draw from (None, for an export written before them: the real median for all)."""
    qc_labels = [bundle.vocabulary.control_label, *labels]
    library = real_median if depths is None else depths
    generated, matched, median = generated_qc(
        bundle, qc_labels, library, eval_cfg, seed=seed, purpose="evaluate/qc_depth"
    )
    _, at_1e4, _ = generated_qc(
        bundle, qc_labels, EVAL_LIBRARY, eval_cfg, seed=seed, purpose="evaluate/qc"
    )
    if depths is None:
        source = "ℓ = the real median library (an export without the real library sizes)"
        real = {"real_median": real_median}
    else:
        cells = "all real QC-pass cells" if split == "all" else f"the {split} split's real cells"
        source = f"ℓ drawn from the library sizes of {cells}"
        real = {"real_cells": int(depths.size), "real_median": float(np.median(depths))}
    depth = {"drawn_from": source, **real, "generated_median": median}
    return {"depth_matched": matched, "library_1e4": at_1e4, "depth": depth}, generated
