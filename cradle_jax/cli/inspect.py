"""`cradle-jax inspect`: validate an .h5ad against the data contract and summarise it."""

import json

from absl import flags

from cradle_jax.config import data_config
from cradle_jax.data import qc
from cradle_jax.data.dataset import PerturbData, load_perturb_data, with_generated_basis
from cradle_jax.evaluate.scores.qc_rate import generated_criteria

_DATA = data_config()
DATA = flags.DEFINE_string("data", None, "inspect: the .h5ad to read")
LAYER = flags.DEFINE_string("layer", _DATA.layer, "layer with raw counts ('' = X)")
PERTURBATION_KEY = flags.DEFINE_string(
    "perturbation_key", _DATA.perturbation_key, "obs column naming each cell's perturbation"
)
CONTROL_LABEL = flags.DEFINE_string("control_label", _DATA.control_label, "label of control cells")
SEPARATOR = flags.DEFINE_string("separator", _DATA.separator, "joins singles in a combination")
SPLIT = flags.DEFINE_enum(
    "split", _DATA.split, ["random", "combinations", "column"], "how cells are split"
)
QC_THRESHOLD = flags.DEFINE_integer("qc_threshold", _DATA.qc_threshold, "MAD multiplier t")
QC_COLUMNS = flags.DEFINE_string(
    "qc_columns",
    "",
    "obs columns of QC metrics spelled differently, e.g. 'UMI_count=total_counts,ngenes=n_genes' "
    "(data.qc_columns); metrics obs lacks are computed",
)
BACKED = flags.DEFINE_bool("backed", _DATA.backed, "read counts from disk by row blocks")
AS_JSON = flags.DEFINE_bool("json", False, "inspect: print the summary as JSON")


def run(seed: int) -> None:
    """Load the file as training would and print its summary."""
    if not DATA.value:
        raise flags.ValidationError("inspect needs --data FILE.h5ad")
    config = data_config()
    config.update(
        path=DATA.value,
        layer=LAYER.value,
        perturbation_key=PERTURBATION_KEY.value,
        control_label=CONTROL_LABEL.value,
        separator=SEPARATOR.value,
        split=SPLIT.value,
        qc_threshold=QC_THRESHOLD.value,
        qc_columns=QC_COLUMNS.value or None,
        backed=BACKED.value,
    )
    # The generated cells' QC basis too: the summary says how generated cells would be judged.
    data = with_generated_basis(load_perturb_data(config.path, config, seed), config, seed)
    summary = data.summary()
    summary["qc_fail_fraction_by_threshold"] = _fail_fractions(data)
    summary["qc_thresholds"] = data.qc_thresholds.to_dict()
    summary["qc_generated_cells"] = generated_criteria(data.qc_thresholds)
    print(json.dumps(summary, indent=2) if AS_JSON.value else _report(summary))


def _fail_fractions(data: PerturbData) -> dict[str, dict[str, float]]:
    """Share of cells failing each criterion, and any, at every t of QC_MULTIPLIERS."""
    out = {}
    for t in qc.QC_MULTIPLIERS:
        flags_t = qc.qc_flags(data.qc_metrics.table, data.qc_thresholds, t)
        shares = {name: float(flags_t[name].mean()) for name in flags_t.columns}
        shares["any"] = float(qc.total_qc(flags_t).mean())
        out[str(t)] = shares
    return out


def _report(summary: dict) -> str:
    lines = [
        f"{summary['cells']} cells x {summary['genes']} genes; {summary['perturbations']} "
        f"perturbations in {summary['treatments']} treatments (control included)",
        "split: "
        + ", ".join(f"{k} {v}" for k, v in summary["split_cells"].items())
        + f", unused {summary['unused_cells']}",
        f"cells without a counterfactual reference: {summary['cells_without_reference']}",
        *(
            f"warning: perturbation {label!r} looks like a failed guide assignment; drop its "
            "cells before training (README 'Your data')"
            for label in summary["non_assignment_labels"]
        ),
        f"QC metrics: {summary['qc_metrics_source']}; QC columns: "
        + ", ".join(summary["qc_columns"]),
    ]
    lines += [f"  not available: {m} ({why})" for m, why in summary["qc_unavailable"].items()]
    lines.append(
        "QC criteria: where the real cells' values come from; how generated cells are judged"
    )
    for metric, source in summary["qc_sources"].items():
        judged = summary["qc_generated_cells"].get(metric, "not judged")
        judged = "not judged" if source.startswith("unavailable") else judged
        lines.append(f"  {metric:<18} {source}; generated cells: {judged}")
    fractions = summary["qc_fail_fraction_by_threshold"]
    thresholds = summary["qc_thresholds"]["thresholds"]
    criteria = list(fractions["3"])
    lines.append("QC fail fraction (threshold) by MAD multiplier t:")
    lines.append(f"  {'criterion':<24}" + "".join(f"{'t=' + t:>22}" for t in fractions))
    for name in criteria:
        metric = name.removeprefix("qc_")
        cells = []
        for t in fractions:
            limit = thresholds[t].get(metric)
            shown = f"{fractions[t][name]:.3f}"
            cells.append(shown if limit is None else f"{shown} ({limit:.4g})")
        lines.append(f"  {name:<24}" + "".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)
