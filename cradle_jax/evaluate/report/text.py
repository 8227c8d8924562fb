"""The printed report of an evaluation: the headline row, every ATE metric per column with what
each column compares with, the QC pass rates and how generated cells were judged, the
baselines' and the planted truth's rows (docs/metrics.md#headline)."""

from cradle_jax.evaluate.report.run import HEADLINE, SPLITS
from cradle_jax.evaluate.scores.qc_depth import PAPER_LABEL


def _number(value) -> str:
    return "—" if value is None else f"{value:.4f}"


def report(metrics: dict) -> str:
    """The headline row (docs/metrics.md#headline), every ATE metric per column with what each
    column compares with, the QC pass rates, and the baselines' and planted truth's rows."""
    head = metrics["headline"]
    scores = ", ".join(f"{name} {_number(head[name])}" for name in (*HEADLINE, "qc_pass_rate_t3"))
    lines = [
        f"headline ({head['split']} split): {scores} (at the real depth; "
        f"{PAPER_LABEL} {_number(head.get('qc_pass_rate_t3_library_1e4'))})",
        "",
        f"{'metric':<22}" + "".join(f"{split:>10}" for split in SPLITS),
    ]
    names = sorted({key.rsplit("-", 1)[0] for key in metrics["ate"]})
    for name in names:
        row = "".join(f"{_number(metrics['ate'].get(f'{name}-{s}')):>10}" for s in SPLITS)
        lines.append(f"{name:<22}{row}")
    lines.append("columns (reference: the real cells whose data ATE a column compares with):")
    lines += [f"  {split}: {text}" for split, text in metrics["columns"].items()]
    lines += ["", *_qc_lines(metrics["qc"])]
    if "test_iwelbo" in metrics:
        lines.append(f"test IWELBO: {metrics['test_iwelbo']:.4f}")
    for name, baseline in metrics.get("baselines", {}).items():
        head = baseline["headline"]
        scores = ", ".join(f"{metric} {_number(head[metric])}" for metric in HEADLINE)
        lines.append(f"baseline {name} ({metrics['headline']['split']} split): {scores}")
    for key, value in metrics.get("truth", {}).items():
        lines.append(f"planted truth {key}: {_number(value)}")
    for split, values in metrics.get("truth_by_split", {}).items():
        scores = ", ".join(f"{key} {_number(value)}" for key, value in values.items())
        lines.append(f"planted truth ({split} split): {scores}")
    return "\n".join(lines)


def _qc_lines(qc: dict) -> list[str]:
    """The QC pass rates of generated cells (at the real depth, then at ℓ = 10⁴) and of real
    cells, and the criteria they were judged by."""
    depth = qc["depth"]
    titles = {
        "depth_matched": f"at the real depth ({depth['drawn_from']}; median library "
        f"{depth['real_median']:.0f} real, {depth['generated_median']:.0f} generated)",
        "library_1e4": PAPER_LABEL,
    }
    lines = []
    for key, title in titles.items():
        rates = ", ".join(f"t={t} {_number(qc[key][f'qc_pass_rate_t{t}'])}" for t in (3, 4, 5))
        lines.append(f"QC pass rate of generated cells {title}: {rates}")
    lines.append(f"QC pass rate of real cells (t=3): {_number(qc['real_pass_rate_t3'])}")
    criteria = [name.removeprefix("qc_") for name in qc["depth_matched"].get("criteria", [])]
    unused = (
        ""
        if "predicted_doublet" in criteria
        else "; no doublet call (Scrublet could not fit one on the real cells or called none)"
    )
    lines.append(f"QC criteria of generated cells: {', '.join(criteria) or 'none'}{unused}")
    return lines + _basis_lines(qc["depth_matched"].get("basis", {}))


def _basis_lines(basis: dict[str, str]) -> list[str]:
    """How generated cells were judged on each QC metric, one line each, when some metric was
    not judged (docs/metrics.md#qc-basis); nothing when every one was."""
    if not any(text.startswith("not judged") for text in basis.values()):
        return []
    lines = ["how generated cells were judged on each QC metric:"]
    return lines + [f"  {metric}: {text}" for metric, text in basis.items()]
