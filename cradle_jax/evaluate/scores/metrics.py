"""Agreement between a model's average treatment effects and the data's or the planted truth.

The metrics of docs/metrics.md#ate-metrics, with Y = reference ATE (n_pert, G) and Ŷ = model ATE
(n_pert, G):

* `ATE_pearsonr`, `ATE_r2`: Pearson correlation (scipy's `pearsonr`) and R² = 1 − Σ(Y−Ŷ)²/Σ(Y−Ȳ)²
  (sklearn's `r2_score`) over the flattened tables (all perturbations × all genes);
* `ATE_pearsonr_top{k}`, `ATE_r2_top{k}`: the same restricted, per perturbation, to the k genes
  with the largest |Y| (ranked by the reference effect, not the model's), then flattened;
* `jaccard_sim_top{k}`: per perturbation, |S_k(Y) ∩ S_k(Ŷ)| / |S_k(Y) ∪ S_k(Ŷ)| where S_k is the
  set of the k genes with the largest |effect|, averaged over perturbations.

Top-k sets break ties by gene order (the lower index wins), the convention the simulator's planted
DE gene sets use, so model sets, data sets and planted sets are comparable; the original code used
`argpartition`, whose tie order is arbitrary.

A metric that is undefined is NaN rather than an error: every metric with zero perturbations
(or zero genes); Pearson when Y or Ŷ is constant; Jaccard when a row of Ŷ is constant (its
top-k set would be the first k genes by tie order, e.g. for the control-mean baseline's Ŷ = 0);
R² when Y is constant (sklearn would return 1.0
or 0.0 there, which reads like a score); both when a table holds a non-finite value (sklearn
refuses it, the formulas give NaN). Evaluation of a split that simply has no perturbation
gives None instead (JSON null), see `split_ate_metrics`.
"""

from collections.abc import Mapping, Sequence

import numpy as np

LabelList = np.ndarray | Sequence[str]


def top_k_genes(effects: np.ndarray, k: int) -> np.ndarray:
    """(n_pert, min(k, G)) indices of the k largest |effect| per row, largest first.

    Ties in |effect| (equal values, or +x and −x) go to the lower gene index (stable sort), as in
    the simulator's planted `de_genes_top{k}`.
    """
    effects = np.asarray(effects)
    if effects.ndim != 2:
        raise ValueError(f"effects must be (n_pert, G), got shape {effects.shape}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    order = np.argsort(-np.abs(effects), axis=1, kind="stable")
    return order[:, : min(k, effects.shape[1])]


def _varies(values: np.ndarray) -> bool:
    """True when the 1-D `values` are finite and not all equal (so at least two of them)."""
    return values.size > 1 and bool(np.isfinite(values).all()) and np.ptp(values) > 0


def pearson_r(y: np.ndarray, y_hat: np.ndarray) -> float:
    """scipy's Pearson correlation of two 1-D arrays; NaN where it is undefined (fewer than two
    entries, a constant or non-finite array), where scipy would raise or warn."""
    if not (_varies(y) and _varies(y_hat)):
        return float("nan")
    from scipy.stats import pearsonr  # lazy: its import slows every command's start

    return float(pearsonr(y, y_hat).statistic)


def _r2(y: np.ndarray, y_hat: np.ndarray) -> float:
    """sklearn's R² = 1 − SS_res/SS_tot of 1-D arrays, Y the reference; NaN if Y is constant or
    empty or either array holds a non-finite value."""
    if not (_varies(y) and np.isfinite(y_hat).all()):
        return float("nan")
    from sklearn.metrics import r2_score  # lazy: its import slows every command's start

    return float(r2_score(y, y_hat))


def _mean_jaccard(sets_a: np.ndarray, sets_b: np.ndarray) -> float:
    """Mean over rows of the Jaccard index of two (n_pert, k) index arrays, one set per row.

    Entries within a row are assumed distinct (true of top-k indices). NaN with no rows or if
    both sets of a row are empty.
    """
    if sets_a.shape[0] != sets_b.shape[0]:
        raise ValueError(f"set arrays disagree on n_pert: {sets_a.shape} vs {sets_b.shape}")
    if sets_a.shape[0] == 0:
        return float("nan")
    intersection = (sets_a[:, :, None] == sets_b[:, None, :]).any(axis=2).sum(axis=1)
    union = sets_a.shape[1] + sets_b.shape[1] - intersection
    if not np.all(union > 0):
        return float("nan")
    return float(np.mean(intersection / union))


def _check_tables(reference: np.ndarray, model: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both tables as float64 (n_pert, G); ValueError naming both shapes unless they match."""
    reference, model = np.asarray(reference, np.float64), np.asarray(model, np.float64)
    if reference.ndim != 2 or reference.shape != model.shape:
        raise ValueError(
            f"ATE tables must both be (n_pert, G) with equal shapes, got reference "
            f"{reference.shape} and model {model.shape}"
        )
    return reference, model


def _metric_names(top_k: int, jaccard_ks: Sequence[int]) -> list[str]:
    return [
        "ATE_pearsonr",
        "ATE_r2",
        f"ATE_pearsonr_top{top_k}",
        f"ATE_r2_top{top_k}",
        *(f"jaccard_sim_top{k}" for k in jaccard_ks),
    ]


def ate_metrics(
    data_ate: np.ndarray,
    model_ate: np.ndarray,
    top_k: int = 20,
    jaccard_ks: tuple[int, ...] = (20, 50),
) -> dict[str, float]:
    """The ATE metrics of a model ATE table against a data ATE table, both (n_pert, G).

    Rows are perturbations in the same order (see `align`). Keys: `ATE_pearsonr`, `ATE_r2`,
    `ATE_pearsonr_top{top_k}`, `ATE_r2_top{top_k}` and `jaccard_sim_top{k}` for k in
    `jaccard_ks`. Undefined metrics are NaN (module docstring).
    """
    Y, Y_hat = _check_tables(data_ate, model_ate)
    top = top_k_genes(Y, top_k)  # ranked by the data effect for both tables
    Y_top = np.take_along_axis(Y, top, axis=1).ravel()
    Y_hat_top = np.take_along_axis(Y_hat, top, axis=1).ravel()
    metrics = {
        "ATE_pearsonr": pearson_r(Y.ravel(), Y_hat.ravel()),
        "ATE_r2": _r2(Y.ravel(), Y_hat.ravel()),
        f"ATE_pearsonr_top{top_k}": pearson_r(Y_top, Y_hat_top),
        f"ATE_r2_top{top_k}": _r2(Y_top, Y_hat_top),
    }
    ranked = Y_hat.size > 0 and bool(np.all(np.ptp(Y_hat, axis=1) > 0))
    for k in jaccard_ks:
        jaccard = _mean_jaccard(top_k_genes(Y, k), top_k_genes(Y_hat, k)) if ranked else np.nan
        metrics[f"jaccard_sim_top{k}"] = jaccard
    return metrics


def split_ate_metrics(
    data_ate: np.ndarray,
    model_ate: np.ndarray,
    labels: LabelList,
    labels_by_split: Mapping[str, LabelList],
    top_k: int = 20,
    jaccard_ks: tuple[int, ...] = (20, 50),
) -> dict[str, float | None]:
    """`ate_metrics` per split, keyed `f"{metric}-{split}"` (e.g. `ATE_r2-test`).

    `labels` (n_pert,) names the rows of both tables; split s uses the rows whose label is in
    `labels_by_split[s]` (labels absent from the tables, such as control, are ignored). A split
    that selects no row (no held-out pairs, say) gets None for each of its metrics, which JSON
    writes as null.
    """
    Y, Y_hat = _check_tables(data_ate, model_ate)
    labels = np.asarray(labels)
    if labels.shape != (Y.shape[0],):
        raise ValueError(f"labels must be ({Y.shape[0]},) to name the rows, got {labels.shape}")
    names = _metric_names(top_k, jaccard_ks)
    metrics: dict[str, float | None] = {}
    for split, members in labels_by_split.items():
        wanted = set(np.asarray(members).tolist())  # not np.isin: it casts to labels' width
        rows = np.array([label in wanted for label in labels.tolist()], dtype=bool)
        if not rows.any():
            metrics.update({f"{name}-{split}": None for name in names})
            continue
        values = ate_metrics(Y[rows], Y_hat[rows], top_k=top_k, jaccard_ks=jaccard_ks)
        metrics.update({f"{name}-{split}": values[name] for name in names})
    return metrics


def truth_metrics(
    true_ate: np.ndarray,
    model_ate: np.ndarray,
    true_top_sets: Mapping[int, np.ndarray],
) -> dict[str, float]:
    """Agreement of a model ATE (n_pert, G) with a simulation's planted truth.

    `truth_ATE_pearsonr` and `truth_ATE_r2` compare the model with the planted true ATE
    (n_pert, G); `truth_jaccard_top{k}` compares the model's top-k sets with the planted DE gene
    sets `true_top_sets[k]` (n_pert, k) index arrays (the simulator's `de_genes_top{k}`, rows
    aligned with the tables, control row dropped). Undefined metrics are NaN.
    """
    Y, Y_hat = _check_tables(true_ate, model_ate)
    metrics = {
        "truth_ATE_pearsonr": pearson_r(Y.ravel(), Y_hat.ravel()),
        "truth_ATE_r2": _r2(Y.ravel(), Y_hat.ravel()),
    }
    for k, planted in true_top_sets.items():
        planted = np.asarray(planted)
        if planted.ndim != 2 or planted.shape[0] != Y.shape[0]:
            raise ValueError(
                f"planted top-{k} sets must be ({Y.shape[0]}, k), got shape {planted.shape}"
            )
        metrics[f"truth_jaccard_top{k}"] = _mean_jaccard(planted, top_k_genes(Y_hat, k))
    return metrics


def align(
    labels_a: LabelList,
    table_a: np.ndarray,
    labels_b: LabelList,
    table_b: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inner join of two tables (n_a, ...) and (n_b, ...) by the label of their rows.

    Returns (labels (n,), rows of table_a (n, ...), rows of table_b (n, ...)) for the labels
    present in both, in the order of `labels_a`, so that model, data and truth tables line up
    row by row (docs/metrics.md#data-ate). Duplicate labels on either side are a ValueError: the
    join is ambiguous.
    """
    labels_a, labels_b = np.asarray(labels_a), np.asarray(labels_b)
    table_a, table_b = np.asarray(table_a), np.asarray(table_b)
    for name, labels, table in (("a", labels_a, table_a), ("b", labels_b, table_b)):
        if labels.ndim != 1 or table.ndim < 1 or table.shape[0] != labels.shape[0]:
            raise ValueError(
                f"labels_{name} {labels.shape} must name the rows of table_{name} {table.shape}"
            )
        if np.unique(labels).size != labels.size:
            raise ValueError(f"labels_{name} has duplicate labels: the join is ambiguous")
    row_b = {label: i for i, label in enumerate(labels_b.tolist())}
    keep = [i for i, label in enumerate(labels_a.tolist()) if label in row_b]
    rows_b = [row_b[label] for label in labels_a[keep].tolist()]
    return labels_a[keep], table_a[keep], table_b[rows_b]
